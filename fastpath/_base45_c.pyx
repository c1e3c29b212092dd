# cython: language_level=3
"""Base45 decoding (RFC 9285) of untrusted text into a caller's buffer."""

from fastpath._reasons_c cimport Reason

# RFC 9285 alphabet value of each byte, -1 for anything outside it.
cdef signed char _VALUE[256]


cdef void _init_table() noexcept:
    cdef int i
    cdef bytes alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    for i in range(256):
        _VALUE[i] = -1
    for i in range(45):
        _VALUE[alphabet[i]] = i


_init_table()


cdef inline int _digit(base45_char ch) noexcept nogil:
    if ch > 255:
        return -1
    return _VALUE[<unsigned char>ch]


cdef Reason base45_decode(const base45_char* text, Py_ssize_t n,
                          unsigned char* out, Py_ssize_t* out_len) noexcept nogil:
    """Decode ``n`` characters into ``out`` (room for n // 3 * 2 + 1 bytes).

    WIRE-FORMAT 1, the Python twin's order: the alphabet over the whole text
    first, then the length (1 mod 3 cannot be base45), then each triple
    (<= 65535) and the final pair (<= 255). One pass computes all three and
    the first in that order is reported; on failure ``out`` holds garbage.
    """
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t o = 0
    cdef int a, b, c
    cdef int bad_char = 0          # OR of the digits: negative once any was -1
    cdef unsigned int too_big = 0  # non-zero once a triple or the pair overflowed
    cdef unsigned int value
    cdef Py_ssize_t full = n - n % 3
    while i < full:
        a = _digit(text[i])
        b = _digit(text[i + 1])
        c = _digit(text[i + 2])
        bad_char |= a | b | c
        value = <unsigned int>(a + b * 45 + c * 2025)
        too_big |= value >> 16
        out[o] = <unsigned char>(value >> 8)
        out[o + 1] = <unsigned char>value
        o += 2
        i += 3
    if n - full == 2:
        a = _digit(text[i])
        b = _digit(text[i + 1])
        bad_char |= a | b
        value = <unsigned int>(a + b * 45)
        too_big |= value >> 8
        out[o] = <unsigned char>value
        o += 1
    elif n - full == 1:
        bad_char |= _digit(text[i])
    if bad_char < 0:
        return Reason.BASE45_ALPHABET
    if n - full == 1:
        return Reason.BASE45_LENGTH
    if too_big:
        return Reason.BASE45_VALUE
    out_len[0] = o
    return Reason.OK


def b45decode(text: str) -> bytes | int:
    """Python-level entry for tests: the bytes, or the failing Reason number."""
    cdef bytes encoded = text.encode("latin-1", "replace")
    cdef const unsigned char* data = encoded
    cdef Py_ssize_t n = len(encoded)
    cdef unsigned char out[BASE45_MAX_BYTES]
    cdef Py_ssize_t out_len = 0
    if n > BASE45_MAX_TEXT:
        return <int>Reason.QR_TOO_LONG
    cdef Reason reason = base45_decode(data, n, out, &out_len)
    if reason != Reason.OK:
        return <int>reason
    return out[:out_len]
