# Stub of fastpath/_cbor_c.pyx (C API in _cbor_c.pxd).

def validate(data: bytes, allow_cose_tag: bool = True) -> int:
    """For tests: 0 when ``data`` is one acceptable CBOR item, else the failing Reason number."""
