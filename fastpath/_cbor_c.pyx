# cython: language_level=3
"""A strict CBOR (RFC 8949) reader for untrusted bytes (decision 4).

validate_document walks one encoded document without making Python objects and
returns the first reason it is not acceptable; the verifier then reads the
fields it needs from the validated bytes. Rules: definite lengths only,
arguments in preferred (shortest) form, nesting at most CBOR_MAX_DEPTH, lengths
and counts checked against the remaining bytes before anything is read, UTF-8
text, simple values false/true/null/undefined and floats only, map keys int or
text and unique, no tags but one outer tag 18, nothing after the item.
"""

from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp
from fastpath._reasons_c cimport Reason


cdef Reason read_head(Cursor* cursor, Head* head) noexcept nogil:
    """Read one head; checks room, reserved info, indefinite lengths, preferred form."""
    cdef const uint8_t* p = cursor.pos
    cdef int size, i
    cdef uint64_t arg
    if 1 > cursor.end - p:
        return Reason.CBOR_TRUNCATED
    head.start = p
    head.major = p[0] >> 5
    head.info = p[0] & 0x1F
    p += 1
    if head.major == MAJOR_SIMPLE and not (20 <= head.info <= 23 or 25 <= head.info <= 27):
        # Decision 4: false, true, null, undefined and 16/32/64-bit floats only;
        # other simple values, reserved info and a lone break are refused before
        # any argument byte is read.
        return Reason.CBOR_INVALID
    if head.info < 24:
        head.arg = head.info
    elif head.info <= 27:
        size = 1 << (head.info - 24)
        if size > cursor.end - p:
            return Reason.CBOR_TRUNCATED
        arg = 0
        for i in range(size):
            arg = (arg << 8) | p[i]
        p += size
        head.arg = arg
        # Decision 4: shortest form only (floats are values, not arguments).
        if head.major != MAJOR_SIMPLE:
            if (head.info == 24 and arg < 24) or (head.info == 25 and arg <= 0xFF) \
                    or (head.info == 26 and arg <= 0xFFFF) \
                    or (head.info == 27 and arg <= <uint64_t>0xFFFFFFFFU):
                return Reason.CBOR_NON_PREFERRED
    elif head.info <= 30:
        return Reason.CBOR_INVALID  # reserved additional information
    else:
        if MAJOR_BYTES <= head.major <= MAJOR_MAP:
            return Reason.CBOR_INDEFINITE
        # Indefinite int or tag is ill-formed; 0xff is a break with nothing open.
        return Reason.CBOR_INVALID
    cursor.pos = p
    return Reason.OK


cdef bint utf8_valid(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past U+10FFFF."""
    cdef Py_ssize_t i = 0
    cdef uint8_t c, c1
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
        elif 0xC2 <= c <= 0xDF:
            if 2 > n - i or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
        elif 0xE0 <= c <= 0xEF:
            if 3 > n - i:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80:
                return False
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):
                return False  # overlong, or a surrogate
            i += 3
        elif 0xF0 <= c <= 0xF4:
            if 4 > n - i:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80 \
                    or (s[i + 3] & 0xC0) != 0x80:
                return False
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):
                return False  # overlong, or past U+10FFFF
            i += 4
        else:
            return False
    return True


# --- duplicate map keys ---------------------------------------------------------
# Keys are int or text in preferred form, so two keys are equal exactly when
# their encodings are. Small maps compare encodings pairwise; larger ones use an
# open-addressing table so a hostile map of ~2000 keys stays linear.

cdef enum:
    SMALL_MAP = 16

cdef struct Span:
    const uint8_t* start
    Py_ssize_t size


cdef inline uint64_t _span_hash(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL  # FNV-1a
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    return h


cdef inline bint _span_equal(Span a, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if a.size != n or a.start[0] != p[0]:
        return False
    if n <= 16:  # keys are short: a loop beats a call to memcmp
        for i in range(1, n):
            if a.start[i] != p[i]:
                return False
        return True
    return memcmp(a.start, p, n) == 0


cdef struct KeySet:
    Span small[SMALL_MAP]
    Span* table          # NULL until more than SMALL_MAP keys
    Py_ssize_t capacity  # a power of two >= 2 * count
    Py_ssize_t count


cdef int _keyset_init(KeySet* keys, uint64_t count) noexcept nogil:
    """0, or -1 when out of memory."""
    keys.count = 0
    keys.table = NULL
    keys.capacity = 0
    if count <= SMALL_MAP:
        return 0
    keys.capacity = 64
    while <uint64_t>keys.capacity < 2 * count:
        keys.capacity *= 2
    keys.table = <Span*>calloc(keys.capacity, sizeof(Span))
    return 0 if keys.table != NULL else -1


cdef inline void _keyset_free(KeySet* keys) noexcept nogil:
    if keys.table != NULL:
        free(keys.table)
        keys.table = NULL


cdef bint _keyset_add(KeySet* keys, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Add a key encoding; False when it was already there."""
    cdef Py_ssize_t i, mask
    cdef Span span
    span.start = p
    span.size = n
    if keys.table == NULL:
        for i in range(keys.count):
            if _span_equal(keys.small[i], p, n):
                return False
        keys.small[keys.count] = span
        keys.count += 1
        return True
    mask = keys.capacity - 1
    i = <Py_ssize_t>(_span_hash(p, n) & <uint64_t>mask)
    while keys.table[i].start != NULL:
        if _span_equal(keys.table[i], p, n):
            return False
        i = (i + 1) & mask
    keys.table[i] = span
    keys.count += 1
    return True


# --- validation -------------------------------------------------------------------

cdef Reason validate_item(Cursor* cursor, int depth) noexcept nogil:
    """Validate one item whose containers count as nesting level ``depth``."""
    cdef Head head
    cdef Reason reason
    cdef uint64_t i
    cdef KeySet keys
    cdef const uint8_t* key_start
    cdef int key_major
    reason = read_head(cursor, &head)
    if reason != Reason.OK:
        return reason
    if head.major == MAJOR_UINT or head.major == MAJOR_NINT:
        return Reason.OK
    if head.major == MAJOR_BYTES or head.major == MAJOR_TEXT:
        if head.arg > <uint64_t>(cursor.end - cursor.pos):
            return Reason.CBOR_TRUNCATED
        if head.major == MAJOR_TEXT and not utf8_valid(cursor.pos, <Py_ssize_t>head.arg):
            return Reason.CBOR_INVALID
        cursor.pos += head.arg
        return Reason.OK
    if head.major == MAJOR_ARRAY:
        if depth > CBOR_MAX_DEPTH:
            return Reason.CBOR_DEPTH
        # Every item takes at least one byte.
        if head.arg > <uint64_t>(cursor.end - cursor.pos):
            return Reason.CBOR_TRUNCATED
        for i in range(head.arg):
            reason = validate_item(cursor, depth + 1)
            if reason != Reason.OK:
                return reason
        return Reason.OK
    if head.major == MAJOR_MAP:
        if depth > CBOR_MAX_DEPTH:
            return Reason.CBOR_DEPTH
        # Every key and every value takes at least one byte.
        if head.arg > <uint64_t>(cursor.end - cursor.pos) // 2:
            return Reason.CBOR_TRUNCATED
        if _keyset_init(&keys, head.arg) != 0:
            return Reason.CBOR_TRUNCATED  # out of memory: cannot be a real message
        for i in range(head.arg):
            key_start = cursor.pos
            if 1 > cursor.end - key_start:
                reason = Reason.CBOR_TRUNCATED
            else:
                # Decision 4: keys are int or text, judged by the key's initial
                # byte before the key is read.
                key_major = key_start[0] >> 5
                if key_major != MAJOR_UINT and key_major != MAJOR_NINT and key_major != MAJOR_TEXT:
                    reason = Reason.CBOR_INVALID
                else:
                    reason = validate_item(cursor, depth + 1)
            if reason == Reason.OK and not _keyset_add(&keys, key_start,
                                                        cursor.pos - key_start):
                reason = Reason.CBOR_DUPLICATE_KEY
            if reason == Reason.OK:
                reason = validate_item(cursor, depth + 1)
            if reason != Reason.OK:
                _keyset_free(&keys)
                return reason
        _keyset_free(&keys)
        return Reason.OK
    if head.major == MAJOR_TAG:
        return Reason.CBOR_TAG  # decision 4: no tags inside
    # Major 7: read_head let through only false, true, null, undefined and floats.
    return Reason.OK


cdef Reason validate_document(const uint8_t* data, Py_ssize_t n,
                              bint allow_cose_tag) noexcept nogil:
    """Validate exactly one item filling ``data[:n]``.

    allow_cose_tag: the outer COSE message may be wrapped once in tag 18.
    """
    cdef Cursor cursor
    cdef Head head
    cdef Reason reason
    cursor.pos = data
    cursor.end = data + n
    if allow_cose_tag and 1 <= n and (data[0] >> 5) == MAJOR_TAG:
        reason = read_head(&cursor, &head)
        if reason != Reason.OK:
            return reason
        if head.arg != TAG_COSE_SIGN1:
            return Reason.CBOR_TAG
    reason = validate_item(&cursor, 1)
    if reason != Reason.OK:
        return reason
    if cursor.pos != cursor.end:
        return Reason.CBOR_TRAILING
    return Reason.OK


cdef void skip_valid(Cursor* cursor) noexcept nogil:
    cdef Head head
    cdef uint64_t i
    if read_head(cursor, &head) != Reason.OK:
        cursor.pos = cursor.end
        return
    if head.major == MAJOR_BYTES or head.major == MAJOR_TEXT:
        if head.arg <= <uint64_t>(cursor.end - cursor.pos):
            cursor.pos += head.arg
        else:
            cursor.pos = cursor.end
    elif head.major == MAJOR_ARRAY:
        for i in range(head.arg):
            skip_valid(cursor)
    elif head.major == MAJOR_MAP:
        for i in range(head.arg):
            skip_valid(cursor)
            skip_valid(cursor)
    elif head.major == MAJOR_TAG:
        skip_valid(cursor)


def validate(data: bytes, allow_cose_tag: bool = True) -> int:
    """Python-level entry for tests: 0, or the failing Reason number."""
    cdef const uint8_t* p = data
    return <int>validate_document(p, len(data), allow_cose_tag)
