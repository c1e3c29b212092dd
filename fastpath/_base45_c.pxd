# C declarations of the base45 decoder (fastpath/_base45_c.pyx), RFC 9285.

from fastpath._reasons_c cimport Reason

# Longest base45 text accepted (decision 2): a 4096-byte message stored
# uncompressed needs at most ~6161 characters.
cdef enum:
    BASE45_MAX_TEXT = 6200
    # 6200 characters decode to at most 6200 // 3 * 2 + 1 bytes.
    BASE45_MAX_BYTES = 4134

ctypedef fused base45_char:
    unsigned char          # Py_UCS1: compact ASCII and latin-1 strings
    unsigned short         # Py_UCS2
    unsigned int           # Py_UCS4

cdef Reason base45_decode(const base45_char* text, Py_ssize_t n,
                          unsigned char* out, Py_ssize_t* out_len) noexcept nogil
