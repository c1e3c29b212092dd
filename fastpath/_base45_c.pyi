# Stub of fastpath/_base45_c.pyx (C API in _base45_c.pxd).

def b45decode(text: str) -> bytes | int:
    """For tests: the decoded bytes, or the number of the failing Reason (_reasons_c.pxd)."""
