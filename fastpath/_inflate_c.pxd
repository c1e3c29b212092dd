# C declarations of the bounded zlib inflate (fastpath/_inflate_c.pyx).

from fastpath._reasons_c cimport Reason

cdef enum:
    # WIRE-FORMAT 1: the inflated COSE message is at most 4096 bytes.
    INFLATE_MAX = 4096
    # Inflate into one byte more than allowed: filling it proves the excess.
    INFLATE_BUFFER = 4097

cdef Reason zlib_inflate_bounded(const unsigned char* data, Py_ssize_t n,
                                 unsigned char* out, Py_ssize_t* out_len) noexcept nogil
