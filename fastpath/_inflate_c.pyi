# Stub of fastpath/_inflate_c.pyx (C API in _inflate_c.pxd).

def inflate_bounded(data: bytes) -> bytes | int:
    """For tests: the inflated bytes (at most 4096), or the number of the failing Reason."""
