# C declarations of the CBOR reader for untrusted bytes (fastpath/_cbor_c.pyx).
#
# A Cursor is a pointer plus the end of its input; every read checks
# ``n <= end - pos`` first (that form cannot overflow).

from libc.stdint cimport uint8_t, uint64_t
from fastpath._reasons_c cimport Reason

cdef enum:
    # Decision 4: nesting depth at most 8, the outer COSE array being depth 1.
    CBOR_MAX_DEPTH = 8
    MAJOR_UINT = 0
    MAJOR_NINT = 1
    MAJOR_BYTES = 2
    MAJOR_TEXT = 3
    MAJOR_ARRAY = 4
    MAJOR_MAP = 5
    MAJOR_TAG = 6
    MAJOR_SIMPLE = 7
    TAG_COSE_SIGN1 = 18

cdef struct Cursor:
    const uint8_t* pos
    const uint8_t* end

# One item's head: major type, additional info and its argument (for bstr/tstr
# the length, arrays/maps the count, ints the value, tags the number).
cdef struct Head:
    int major
    int info
    uint64_t arg
    const uint8_t* start     # first byte of the head

cdef Reason read_head(Cursor* cursor, Head* head) noexcept nogil
cdef Reason validate_item(Cursor* cursor, int depth) noexcept nogil
cdef Reason validate_document(const uint8_t* data, Py_ssize_t n, bint allow_cose_tag) noexcept nogil
cdef bint utf8_valid(const uint8_t* s, Py_ssize_t n) noexcept nogil

# Skip an item already validated (bounds still respected).
cdef void skip_valid(Cursor* cursor) noexcept nogil
