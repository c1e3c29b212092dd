# cython: language_level=3
# The msgpack-reading primitives of the compiled twins that walk stored permit records:
# verifier/index/_stored_c.pyx (the stored-record codec) and
# verifier/api/permits/_render_c.pyx (the look-up renderer). Each cimports them:
#
#     from verifier.lib._msgpack_read cimport Cursor, MP_OK, need, read_array_head, ...
#
# A bounds-checked cursor (pointer, position, end: every read checked as
# n <= end - pos, so a length or a count from a damaged value is never trusted) and
# readers that report a failure by an error code (MP_OK, else one of the MP_* below),
# never by an exception: each module raises its own error class, with its own words,
# for a code (its _fail). None of them touches a Python object (noexcept nogil).
#
# Header only: no module of its own; `cdef inline`, so each module gets its own copy.

from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy


cdef enum:
    MP_OK = 0
    MP_TRUNCATED = -1       # fewer bytes than a header, a length or a count needs
    MP_NOT_ARRAY = -2       # not an array header (fixarray, array 16, array 32)
    MP_NOT_INT = -3         # not one of msgpack's integer forms
    MP_NOT_STR = -4         # not a str header (fixstr, str 8, 16, 32)
    MP_BAD_UTF8 = -5        # not strict UTF-8 (check_utf8)
    MP_OUT_OF_RANGE = -6    # an integer outside 0 .. most (read_uint)


cdef struct Cursor:
    const unsigned char* p
    Py_ssize_t pos
    Py_ssize_t end


cdef inline int need(Cursor* c, Py_ssize_t n) noexcept nogil:
    # n more bytes are there (a negative n, from an overflowed length, never is).
    if n < 0 or n > c.end - c.pos:
        return MP_TRUNCATED
    return MP_OK


cdef inline uint64_t big_endian(const unsigned char* p, int n) noexcept nogil:
    cdef uint64_t value = 0
    cdef int i
    for i in range(n):
        value = (value << 8) | p[i]
    return value


cdef inline bint is_int_head(unsigned char kind) noexcept nogil:
    # The first byte of one of msgpack's integer forms.
    return kind <= 0x7F or 0xCC <= kind <= 0xD3 or kind >= 0xE0


cdef inline bint array_of_int_first(const unsigned char* p, Py_ssize_t size) noexcept nogil:
    # An array whose first element is an integer: how a compact stored value is told from
    # a legacy one (verifier.index._stored_py.is_compact), read without a cursor.
    cdef Py_ssize_t at
    if size == 0:
        return False
    if 0x90 <= p[0] <= 0x9F:
        at = 1
    elif p[0] == 0xDC:
        at = 3
    elif p[0] == 0xDD:
        at = 5
    else:
        return False
    return at < size and is_int_head(p[at])


cdef inline int read_array_head(Cursor* c, Py_ssize_t* count) noexcept nogil:
    # An array header (any of its forms): its element count, not checked against the bytes left.
    cdef unsigned char kind
    if need(c, 1):
        return MP_TRUNCATED
    kind = c.p[c.pos]
    c.pos += 1
    if 0x90 <= kind <= 0x9F:
        count[0] = kind & 0x0F
        return MP_OK
    if kind == 0xDC:
        if need(c, 2):
            return MP_TRUNCATED
        count[0] = <Py_ssize_t>big_endian(c.p + c.pos, 2)
        c.pos += 2
        return MP_OK
    if kind == 0xDD:
        if need(c, 4):
            return MP_TRUNCATED
        count[0] = <Py_ssize_t>big_endian(c.p + c.pos, 4)
        c.pos += 4
        return MP_OK
    return MP_NOT_ARRAY


cdef inline int read_int(Cursor* c, bint* negative, uint64_t* magnitude) noexcept nogil:
    # Any of msgpack's integer forms: the sign and the magnitude (so uint 64 fits).
    cdef unsigned char kind
    cdef int size
    cdef bint signed = False
    cdef uint64_t raw
    if need(c, 1):
        return MP_TRUNCATED
    kind = c.p[c.pos]
    c.pos += 1
    if kind <= 0x7F:
        negative[0] = False
        magnitude[0] = kind
        return MP_OK
    if kind >= 0xE0:  # negative fixint: -32 .. -1
        negative[0] = True
        magnitude[0] = 0x100 - kind
        return MP_OK
    if 0xCC <= kind <= 0xCF:
        size = 1 << (kind - 0xCC)
    elif 0xD0 <= kind <= 0xD3:
        size = 1 << (kind - 0xD0)
        signed = True
    else:
        return MP_NOT_INT
    if need(c, size):
        return MP_TRUNCATED
    raw = big_endian(c.p + c.pos, size)
    c.pos += size
    if signed and (raw >> (size * 8 - 1)) & 1:
        # sign-extend, then the magnitude without overflowing at the most negative value
        if size < 8:
            raw |= ~((<uint64_t>1 << (size * 8)) - 1)
        negative[0] = True
        magnitude[0] = <uint64_t>(-(<int64_t>raw + 1)) + 1
    else:
        negative[0] = False
        magnitude[0] = raw
    return MP_OK


cdef inline int read_uint(Cursor* c, uint64_t most, uint64_t* value) noexcept nogil:
    # An integer in 0 .. most, in any of msgpack's integer forms.
    cdef bint negative
    cdef uint64_t magnitude
    cdef int status = read_int(c, &negative, &magnitude)
    if status:
        return status
    if negative or magnitude > most:  # a negative one has a magnitude of 1 at least
        return MP_OUT_OF_RANGE
    value[0] = magnitude
    return MP_OK


cdef inline int read_str_head(Cursor* c, Py_ssize_t* n) noexcept nogil:
    # A str header (any of its forms): its length n, the n bytes checked to be there; the
    # cursor is left at them (the caller takes them: c.p + c.pos, then c.pos += n).
    cdef unsigned char kind
    cdef Py_ssize_t length
    if need(c, 1):
        return MP_TRUNCATED
    kind = c.p[c.pos]
    if 0xA0 <= kind <= 0xBF:
        c.pos += 1
        length = kind & 0x1F
    elif kind == 0xD9:
        if need(c, 2):
            return MP_TRUNCATED
        length = c.p[c.pos + 1]
        c.pos += 2
    elif kind == 0xDA:
        if need(c, 3):
            return MP_TRUNCATED
        length = <Py_ssize_t>big_endian(c.p + c.pos + 1, 2)
        c.pos += 3
    elif kind == 0xDB:
        if need(c, 5):
            return MP_TRUNCATED
        length = <Py_ssize_t>big_endian(c.p + c.pos + 1, 4)
        c.pos += 5
    else:
        return MP_NOT_STR
    if need(c, length):
        return MP_TRUNCATED
    n[0] = length
    return MP_OK


cdef inline int check_utf8(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    # Strict UTF-8 as Python decodes it: no overlong forms, no surrogates, nothing past
    # U+10FFFF; MP_OK, else MP_BAD_UTF8.
    cdef Py_ssize_t i = 0
    cdef unsigned char c, c1, tail
    cdef uint64_t word
    cdef Py_ssize_t k
    while i < n:
        if n - i >= 8:  # plain ASCII, eight bytes at a time
            memcpy(&word, s + i, 8)
            if (word & 0x8080808080808080ULL) == 0:
                i += 8
                continue
        else:  # the tail, at most 7 bytes: OR them (a short memcpy into a word stalls)
            tail = 0
            for k in range(i, n):
                tail |= s[k]
            if tail < 0x80:
                return MP_OK
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return MP_BAD_UTF8
        if c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return MP_BAD_UTF8
            i += 2
            continue
        if i + 1 >= n:
            return MP_BAD_UTF8
        c1 = s[i + 1]
        if c < 0xF0:
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F) or (c1 & 0xC0) != 0x80:
                return MP_BAD_UTF8
            if i + 2 >= n or (s[i + 2] & 0xC0) != 0x80:
                return MP_BAD_UTF8
            i += 3
            continue
        if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F) or (c1 & 0xC0) != 0x80:
            return MP_BAD_UTF8
        if i + 3 >= n or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
            return MP_BAD_UTF8
        i += 4
    return MP_OK
