# cython: language_level=3
"""The compact stored layout of a permit record: the compiled twin.

The layout, and why, are in the readable twin (``_stored_py.py``), the reference:
this one gives the same bytes (``encode_stored``) and the same records
(``decode_stored``), and refuses what it refuses. It walks the value once (a cursor
of pointer, position and end; every read checked as ``n <= end - pos``, so a length
or a count from a damaged value is never trusted; the cursor and the msgpack readers
are ``verifier/lib/_msgpack_read.pxd``'s, shared with the renderer), accepts every msgpack form of a
type as msgspec does, makes strings with an ASCII fast path (else CPython's strict
UTF-8 decoder), formats the day numbers in C (Howard Hinnant's civil_from_days and
days_from_civil), and builds ``PermitRecord`` / ``Card`` by positional calls with
interned constants for the categories and statuses. A legacy value (its first
element is the permit number, a str) is decoded by msgspec, as the index did before.
The encoder reads a record's fields through their slot offsets (checked at import:
each field of ``PermitRecord`` and ``Card`` is a member descriptor of its type).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_Check, PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.object cimport PyObject, PyObject_TypeCheck, PyTypeObject
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.list cimport PyList_Check
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from libc.stdint cimport int64_t, uint64_t
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, memcpy, memset
from libc.stdio cimport snprintf

from verifier.lib._msgpack_read cimport (
    Cursor, MP_NOT_ARRAY, MP_NOT_INT, MP_NOT_STR, MP_OUT_OF_RANGE, MP_TRUNCATED, array_of_int_first, is_int_head,
    need, read_array_head, read_int, read_str_head, read_uint,
)

import msgspec

from verifier.index._stored_errors import StoredRecordError
from verifier.index.records import Card, PermitRecord, check_identifiers


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    Py_UCS4 PyUnicode_READ_CHAR(object o, Py_ssize_t index)
    bint Py_UNICODE_ISSPACE(Py_UCS4 ch)
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    bint PyBool_Check(object o)
    unsigned long long PyLong_AsUnsignedLongLong(object o) except? <unsigned long long>-1
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef enum:
    FIELDS = 13               # elements of a compact value
    MIN_DAY = -719162         # 0001-01-01
    MAX_DAY = 2932896         # 9999-12-31
    MAX_SMALL = 320           # a record that fits is written through the stack


# Interned constants: a decoded record's categories and statuses are these objects.
cdef tuple CATEGORIES = ("A", "B", "C")
cdef tuple STATUSES = ("active", "cancelled")
cdef tuple CARD_STATUSES = ("active", "lost", "replaced")

_legacy_decode = msgspec.msgpack.Decoder(PermitRecord).decode
cdef object _RECORD = PermitRecord  # a StructMeta, a subclass of type
cdef object _CARD = Card


# --- the slots of a record and of a card, for the encoder -----------------------------------

cdef Py_ssize_t _RECORD_SLOT[14]   # pn n nat dob cat emp vf vt v status ssn cards si ci
cdef Py_ssize_t _CARD_SLOT[2]      # cn status
cdef enum:
    R_PN, R_N, R_NAT, R_DOB, R_CAT, R_EMP, R_VF, R_VT, R_V, R_STATUS, R_SSN, R_CARDS, R_SI, R_CI


def _check_slots():
    """Each field's slot offset, from its member descriptor: a field that is not one (a
    property, a changed Struct) must stop the encoder from loading, not read garbage."""
    member = type(Card.cn)
    for struct, names, slots in ((PermitRecord, ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v",
                                                 "status", "ssn", "cards", "si", "ci"), 0),
                                 (Card, ("cn", "status"), 1)):
        if struct.__struct_fields__ != names:
            raise ImportError(f"verifier.index._stored_c: {struct.__name__}'s fields {struct.__struct_fields__} "
                              f"are not {names}: update the codec (both twins) and rebuild")
        for i, name in enumerate(names):
            descriptor = struct.__dict__.get(name)
            if type(descriptor) is not member or descriptor.__objclass__ is not struct:
                raise ImportError(f"verifier.index._stored_c: {struct.__name__}.{name} is not a slot")
            if slots == 0:
                _RECORD_SLOT[i] = (<PyMemberDescrObject*><PyObject*>descriptor).d_member.offset
            else:
                _CARD_SLOT[i] = (<PyMemberDescrObject*><PyObject*>descriptor).d_member.offset


_check_slots()


cdef inline object _slot(object o, Py_ssize_t offset):
    cdef PyObject* value = (<PyObject**>((<char*><PyObject*>o) + offset))[0]
    if value == NULL:
        raise StoredRecordError("permit record: a field is not set")
    return <object>value


# --- dates --------------------------------------------------------------------------------

cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept:
    # Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms"
    cdef int64_t era, yoe, doy, doe
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline void _civil_from_days(int64_t z, int64_t* y, int64_t* m, int64_t* d) noexcept:
    cdef int64_t era, doe, yoe, doy, mp
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = doy - (153 * mp + 2) // 5 + 1
    m[0] = mp + 3 if mp < 10 else mp - 9
    y[0] = yoe + era * 400 + (m[0] <= 2)


cdef unsigned char _MONTH_DAYS[13]
_MONTH_DAYS[:] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


cdef inline bint _day_of(const char* s, Py_ssize_t n, int64_t* day) noexcept:
    # A canonical YYYY-MM-DD of years 1-9999 (it formats back to itself), else False.
    cdef int i
    cdef int64_t y, m, d, last
    if n != 10 or s[4] != b'-' or s[7] != b'-':
        return False
    for i in range(10):
        if i != 4 and i != 7 and not (b'0' <= s[i] <= b'9'):
            return False
    y = (s[0] - 48) * 1000 + (s[1] - 48) * 100 + (s[2] - 48) * 10 + (s[3] - 48)
    m = (s[5] - 48) * 10 + (s[6] - 48)
    d = (s[8] - 48) * 10 + (s[9] - 48)
    if y < 1 or m < 1 or m > 12 or d < 1:
        return False
    last = _MONTH_DAYS[m]
    if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        last = 29
    if d > last:
        return False
    day[0] = _days_from_civil(y, m, d)
    return True


cdef inline object _date_of(int64_t day):
    # MIN_DAY <= day <= MAX_DAY: a 10-character ASCII str
    cdef int64_t y, m, d
    cdef object text = PyUnicode_New(10, 127)
    cdef char* out = <char*>PyUnicode_DATA(text)
    _civil_from_days(day, &y, &m, &d)
    out[0] = <char>(48 + y // 1000)
    out[1] = <char>(48 + y // 100 % 10)
    out[2] = <char>(48 + y // 10 % 10)
    out[3] = <char>(48 + y % 10)
    out[4] = b'-'
    out[5] = <char>(48 + m // 10)
    out[6] = <char>(48 + m % 10)
    out[7] = b'-'
    out[8] = <char>(48 + d // 10)
    out[9] = <char>(48 + d % 10)
    return text


def _day_of_py(str text):
    """The C day number of a date string, or None (for the tests)."""
    cdef Py_ssize_t n
    cdef const char* s = PyUnicode_AsUTF8AndSize(text, &n)
    cdef int64_t day
    return day if _day_of(s, n, &day) else None


def _date_of_py(int64_t day):
    """The C formatting of a day number (for the tests)."""
    if not MIN_DAY <= day <= MAX_DAY:
        raise ValueError("day out of range")
    return _date_of(day)


# --- reading --------------------------------------------------------------------------------
# The cursor and the msgpack readers are verifier/lib/_msgpack_read.pxd's (shared with the
# renderer); they return an error code, raised here as StoredRecordError (_fail).

cdef int _fail(int code) except -1:
    # A shared reader's error code, as this module's error and words.
    if code == MP_TRUNCATED:
        raise StoredRecordError("permit record truncated")
    if code == MP_NOT_ARRAY:
        raise StoredRecordError("permit record: expected an array")
    if code == MP_NOT_INT:
        raise StoredRecordError("permit record: expected an integer")
    if code == MP_NOT_STR:
        raise StoredRecordError("permit record: expected a string")
    if code == MP_OUT_OF_RANGE:
        raise StoredRecordError("permit record: an integer out of range")
    raise AssertionError(f"verifier.index._stored_c: unexpected reader status {code}")


cdef inline int _need(Cursor* c, Py_ssize_t n) except -1:
    cdef int status = need(c, n)
    if status:
        return _fail(status)
    return 0


cdef inline bint _compact(const unsigned char* p, Py_ssize_t size) noexcept:
    # As _stored_py.is_compact: an array whose first element is an integer.
    return array_of_int_first(p, size)


cdef inline Py_ssize_t _read_array(Cursor* c) except -1:
    cdef Py_ssize_t count
    cdef int status = read_array_head(c, &count)
    if status:
        return _fail(status)
    return count


cdef inline int _read_int(Cursor* c, bint* negative, uint64_t* magnitude) except -1:
    # Any of msgpack's integer forms: the sign and the magnitude (so uint 64 fits).
    cdef int status = read_int(c, negative, magnitude)
    if status:
        return _fail(status)
    return 0


cdef inline uint64_t _read_unsigned(Cursor* c, uint64_t most) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t value
    cdef int status = read_uint(c, most, &value)
    if status:
        _fail(status)
    return value


cdef inline bint _ascii(const unsigned char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i = 0
    cdef uint64_t acc = 0, word
    cdef unsigned char tail = 0
    while i + 8 <= n:
        memcpy(&word, p + i, 8)
        acc |= word
        i += 8
    while i < n:
        tail |= p[i]
        i += 1
    return (acc & 0x8080808080808080ULL) == 0 and tail < 0x80


cdef inline object _text(const unsigned char* p, Py_ssize_t n):
    cdef object text
    if _ascii(p, n):
        text = PyUnicode_New(n, 127)
        memcpy(PyUnicode_DATA(text), p, n)
        return text
    return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)  # strict: UnicodeDecodeError


cdef inline object _read_str(Cursor* c):
    cdef Py_ssize_t n
    cdef int status = read_str_head(c, &n)
    if status:
        _fail(status)
    c.pos += n
    return _text(c.p + c.pos - n, n)


cdef inline object _read_date(Cursor* c):
    # int (a day number, years 1-9999) or str
    cdef bint negative
    cdef uint64_t magnitude
    cdef Py_ssize_t n
    cdef int status
    _need(c, 1)
    if is_int_head(c.p[c.pos]):
        _read_int(c, &negative, &magnitude)
        if (negative and magnitude > -MIN_DAY) or (not negative and magnitude > MAX_DAY):
            raise StoredRecordError("permit record: a day number out of range")
        return _date_of(-<int64_t>magnitude if negative else <int64_t>magnitude)
    status = read_str_head(c, &n)
    if status == MP_NOT_STR:
        raise StoredRecordError("permit record: a date is an int or a str")
    if status:
        _fail(status)
    c.pos += n
    return _text(c.p + c.pos - n, n)


cdef inline object _read_optional_unsigned(Cursor* c):
    _need(c, 1)
    if c.p[c.pos] == 0xC0:
        c.pos += 1
        return None
    return PyLong_FromUnsignedLongLong(_read_unsigned(c, 0xFFFFFFFFFFFFFFFFULL))


cdef object _decode_compact(str pn, const unsigned char* data, Py_ssize_t size):
    cdef Cursor c
    cdef Py_ssize_t count, i
    cdef tuple cards
    c.p = data
    c.pos = 0
    c.end = size
    if _read_array(&c) != FIELDS:
        raise StoredRecordError("permit record: a compact value has 13 elements")
    v = PyLong_FromUnsignedLongLong(_read_unsigned(&c, 0xFFFFFFFFFFFFFFFFULL))
    n = _read_str(&c)
    nat = _read_str(&c)
    dob = _read_date(&c)
    cat = CATEGORIES[_read_unsigned(&c, 2)]
    emp = _read_str(&c)
    vf = _read_date(&c)
    vt = _read_date(&c)
    status = STATUSES[_read_unsigned(&c, 1)]
    _need(&c, 1)
    if c.p[c.pos] == 0xC0:
        c.pos += 1
        ssn = None
    else:
        ssn = _read_str(&c)
    count = _read_array(&c)
    if count > (c.end - c.pos) // 3:  # a card takes 3 bytes at least: never trust a count
        raise StoredRecordError("permit record truncated")
    cards = PyTuple_New(count)
    for i in range(count):
        if _read_array(&c) != 2:
            raise StoredRecordError("permit record: a card is [cn, status]")
        cn = _read_str(&c)
        card = Card(cn, CARD_STATUSES[_read_unsigned(&c, 2)])
        Py_INCREF(card)
        PyTuple_SET_ITEM(cards, i, card)
    si = _read_optional_unsigned(&c)
    ci = _read_optional_unsigned(&c)
    if c.pos != c.end:
        raise StoredRecordError("permit record: trailing bytes")
    return PermitRecord(pn, n, nat, dob, cat, emp, vf, vt, v, status, ssn, cards, si, ci)


# --- writing --------------------------------------------------------------------------------

cdef inline Py_ssize_t _uint_size(uint64_t x) noexcept:
    return 1 if x <= 0x7F else 2 if x <= 0xFF else 3 if x <= 0xFFFF else 5 if x <= 0xFFFFFFFF else 9


cdef inline char* _w_uint(char* out, uint64_t x) noexcept:
    cdef int size, i
    if x <= 0x7F:
        out[0] = <char>x
        return out + 1
    if x <= 0xFF:
        out[0] = <char>0xCC
        size = 1
    elif x <= 0xFFFF:
        out[0] = <char>0xCD
        size = 2
    elif x <= 0xFFFFFFFF:
        out[0] = <char>0xCE
        size = 4
    else:
        out[0] = <char>0xCF
        size = 8
    for i in range(size):
        out[1 + i] = <char>(x >> (8 * (size - 1 - i)))
    return out + 1 + size


cdef inline Py_ssize_t _int_size(int64_t x) noexcept:
    if x >= 0:
        return _uint_size(<uint64_t>x)
    return 1 if x >= -32 else 2 if x >= -128 else 3 if x >= -32768 else 5 if x >= -2147483648 else 9


cdef inline char* _w_int(char* out, int64_t x) noexcept:
    # msgspec's forms: a value >= 0 as unsigned, else negative fixint, int 8, 16, 32, 64
    cdef int size, i
    cdef uint64_t raw = <uint64_t>x
    if x >= 0:
        return _w_uint(out, raw)
    if x >= -32:
        out[0] = <char>(raw & 0xFF)
        return out + 1
    if x >= -128:
        out[0] = <char>0xD0
        size = 1
    elif x >= -32768:
        out[0] = <char>0xD1
        size = 2
    elif x >= -2147483648:
        out[0] = <char>0xD2
        size = 4
    else:
        out[0] = <char>0xD3
        size = 8
    for i in range(size):
        out[1 + i] = <char>(raw >> (8 * (size - 1 - i)))
    return out + 1 + size


cdef inline Py_ssize_t _str_size(Py_ssize_t n) except -1:
    if n <= 31:
        return 1 + n
    if n <= 0xFF:
        return 2 + n
    if n <= 0xFFFF:
        return 3 + n
    if n <= 0xFFFFFFFF:
        return 5 + n
    raise StoredRecordError("permit record: a string too long for msgpack")


cdef inline char* _w_str(char* out, const char* s, Py_ssize_t n) noexcept:
    if n <= 31:
        out[0] = <char>(0xA0 | n)
        out += 1
    elif n <= 0xFF:
        out[0] = <char>0xD9
        out[1] = <char>n
        out += 2
    elif n <= 0xFFFF:
        out[0] = <char>0xDA
        out[1] = <char>(n >> 8)
        out[2] = <char>n
        out += 3
    else:
        out[0] = <char>0xDB
        out[1] = <char>(n >> 24)
        out[2] = <char>(n >> 16)
        out[3] = <char>(n >> 8)
        out[4] = <char>n
        out += 5
    memcpy(out, s, n)
    return out + n


cdef struct Text:
    const char* s
    Py_ssize_t n


cdef struct Field:       # a date: a day number, or the text as it is
    bint is_day
    int64_t day
    Text text


cdef inline int _utf8(object value, Text* t, const char* what) except -1:
    if not PyUnicode_Check(value):
        raise StoredRecordError(f"permit record: {what.decode()} is a str")
    t.s = PyUnicode_AsUTF8AndSize(value, &t.n)  # UnicodeEncodeError for a lone surrogate
    return 0


cdef inline int _choice(object value, tuple choices, const char* what) except -1:
    # The index of a str among the constants (compared as text, as ``in`` compares).
    cdef Text t
    cdef Py_ssize_t i, n
    cdef const char* s
    if PyUnicode_Check(value):
        t.s = PyUnicode_AsUTF8AndSize(value, &t.n)
        for i in range(len(choices)):
            s = PyUnicode_AsUTF8AndSize(choices[i], &n)
            if n == t.n and memcmp(s, t.s, n) == 0:
                return <int>i
    raise StoredRecordError(f"permit record: unknown {what.decode()}")


cdef inline uint64_t _unsigned(object value, const char* what) except? 0xFFFFFFFFFFFFFFFF:
    if not PyLong_Check(value) or PyBool_Check(value):
        raise StoredRecordError(f"permit record: {what.decode()} is an int in 0 .. 2**64-1")
    try:
        return PyLong_AsUnsignedLongLong(value)
    except OverflowError:
        raise StoredRecordError(f"permit record: {what.decode()} is an int in 0 .. 2**64-1") from None


cdef inline Py_ssize_t _date(object value, Field* f) except -1:
    # Reads a date field; returns its encoded size.
    _utf8(value, &f.text, b"a date")
    f.is_day = _day_of(f.text.s, f.text.n, &f.day)
    return _int_size(f.day) if f.is_day else _str_size(f.text.n)


cdef inline char* _w_date(char* out, Field* f) noexcept:
    return _w_int(out, f.day) if f.is_day else _w_str(out, f.text.s, f.text.n)


cdef bytes _encode(object record):
    cdef Text n, nat, emp, ssn, cn
    cdef Field dob, vf, vt
    cdef uint64_t v, si = 0, ci = 0
    cdef int cat, status
    cdef bint has_ssn, has_si, has_ci
    cdef Py_ssize_t size, count, i
    cdef object cards, card
    cdef char* out
    cdef bytes result
    v = _unsigned(_slot(record, _RECORD_SLOT[R_V]), b"v")
    _utf8(_slot(record, _RECORD_SLOT[R_N]), &n, b"n")
    _utf8(_slot(record, _RECORD_SLOT[R_NAT]), &nat, b"nat")
    _utf8(_slot(record, _RECORD_SLOT[R_EMP]), &emp, b"emp")
    cat = _choice(_slot(record, _RECORD_SLOT[R_CAT]), CATEGORIES, b"category")
    status = _choice(_slot(record, _RECORD_SLOT[R_STATUS]), STATUSES, b"status")
    value = _slot(record, _RECORD_SLOT[R_SSN])
    has_ssn = value is not None
    if has_ssn:
        _utf8(value, &ssn, b"ssn")
    cards = _slot(record, _RECORD_SLOT[R_CARDS])
    if PyList_Check(cards):
        cards = tuple(cards)  # held here: nothing can change it between the two passes
    elif not PyTuple_Check(cards):
        raise StoredRecordError("permit record: cards is a tuple of Card")
    count = PyTuple_GET_SIZE(cards)
    value = _slot(record, _RECORD_SLOT[R_SI])
    has_si = value is not None
    if has_si:
        si = _unsigned(value, b"si")
    value = _slot(record, _RECORD_SLOT[R_CI])
    has_ci = value is not None
    if has_ci:
        ci = _unsigned(value, b"ci")
    size = (1 + _uint_size(v) + _str_size(n.n) + _str_size(nat.n) + _date(_slot(record, _RECORD_SLOT[R_DOB]), &dob)
            + 1 + _str_size(emp.n) + _date(_slot(record, _RECORD_SLOT[R_VF]), &vf)
            + _date(_slot(record, _RECORD_SLOT[R_VT]), &vt) + 1 + (_str_size(ssn.n) if has_ssn else 1)
            + (1 if count <= 15 else 3 if count <= 0xFFFF else 5)
            + (_uint_size(si) if has_si else 1) + (_uint_size(ci) if has_ci else 1))
    for i in range(count):  # each card checked, and its size
        card = <object>PyTuple_GET_ITEM(cards, i)
        if not PyObject_TypeCheck(card, <PyTypeObject*>_CARD):  # by its type: its slots are read
            raise StoredRecordError("permit record: cards is a tuple of Card")
        _utf8(_slot(card, _CARD_SLOT[0]), &cn, b"a card number")
        _choice(_slot(card, _CARD_SLOT[1]), CARD_STATUSES, b"card status")
        size += 2 + _str_size(cn.n)
    result = PyBytes_FromStringAndSize(NULL, size)
    out = PyBytes_AS_STRING(result)
    out[0] = <char>(0x90 | FIELDS)
    out = _w_uint(out + 1, v)
    out = _w_str(out, n.s, n.n)
    out = _w_str(out, nat.s, nat.n)
    out = _w_date(out, &dob)
    out[0] = <char>cat
    out = _w_str(out + 1, emp.s, emp.n)
    out = _w_date(out, &vf)
    out = _w_date(out, &vt)
    out[0] = <char>status
    out += 1
    if has_ssn:
        out = _w_str(out, ssn.s, ssn.n)
    else:
        out[0] = <char>0xC0
        out += 1
    if count <= 15:
        out[0] = <char>(0x90 | count)
        out += 1
    elif count <= 0xFFFF:
        out[0] = <char>0xDC
        out[1] = <char>(count >> 8)
        out[2] = <char>count
        out += 3
    else:
        out[0] = <char>0xDD
        out[1] = <char>(count >> 24)
        out[2] = <char>(count >> 16)
        out[3] = <char>(count >> 8)
        out[4] = <char>count
        out += 5
    for i in range(count):  # checked above (a tuple, of frozen cards)
        card = <object>PyTuple_GET_ITEM(cards, i)
        _utf8(_slot(card, _CARD_SLOT[0]), &cn, b"a card number")
        out[0] = <char>0x92
        out = _w_str(out + 1, cn.s, cn.n)
        out[0] = <char>_choice(_slot(card, _CARD_SLOT[1]), CARD_STATUSES, b"card status")
        out += 1
    if has_si:
        out = _w_uint(out, si)
    else:
        out[0] = <char>0xC0
        out += 1
    if has_ci:
        out = _w_uint(out, ci)
    else:
        out[0] = <char>0xC0
        out += 1
    if out - PyBytes_AS_STRING(result) != size:  # the two passes disagree: a bug, never a bad value
        raise AssertionError("verifier.index._stored_c: encoded size mismatch")
    return result


# --- the entry points -------------------------------------------------------------------------

def encode_stored(record):
    """See ``_stored_py.encode_stored``: the same contract, the same bytes."""
    if not PyObject_TypeCheck(record, <PyTypeObject*>_RECORD):  # by its type (not __class__): its slots are read
        raise TypeError("encode_stored takes a PermitRecord")
    try:
        return _encode(record)
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise StoredRecordError(f"permit record: a string is not UTF-8: {exc}") from None


def decode_stored(pn, raw):
    """See ``_stored_py.decode_stored``: the same contract, the same records."""
    cdef const unsigned char* data
    cdef Py_ssize_t size
    if not PyBytes_Check(raw):
        raise TypeError("a stored record is bytes")
    data = <const unsigned char*>PyBytes_AS_STRING(raw)
    size = PyBytes_GET_SIZE(raw)
    if not _compact(data, size):
        try:
            return _legacy_decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise StoredRecordError(f"undecodable permit record: {exc}") from None
    if not PyUnicode_Check(pn):
        raise TypeError("a permit number is a str")
    try:
        return _decode_compact(pn, data, size)
    except UnicodeDecodeError as exc:
        raise StoredRecordError(f"undecodable permit record: {exc}") from None


def stored_version(raw):
    """See ``_stored_py.stored_version``."""
    return decode_stored("", raw).v


def is_compact(raw):
    """See ``_stored_py.is_compact``."""
    if not PyBytes_Check(raw):
        raise TypeError("a stored record is bytes")
    return _compact(<const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))


# --- a snapshot batch, prepared for the load (SnapshotLoad.prepare) --------------------------

cdef uint32_t _CRC_TABLE[256]


cdef void _crc_init() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = <uint32_t>n
        for k in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        _CRC_TABLE[n] = c


_crc_init()


cdef inline uint32_t _crc32(const unsigned char* p, Py_ssize_t n) noexcept:
    """zlib.crc32 (the IEEE polynomial, reflected), a byte at a time."""
    cdef uint32_t c = 0xFFFFFFFF
    cdef Py_ssize_t i
    for i in range(n):
        c = _CRC_TABLE[(c ^ p[i]) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _crc32_py(bytes data):
    """For the tests: the C crc32 the buckets are chosen by (must equal zlib.crc32)."""
    return _crc32(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef inline bint _usable_pn(object pn) noexcept:
    """check_identifiers' rule for a permit number: not empty, no white space (re's
    ``\\s``, which is Py_UNICODE_ISSPACE), no NUL."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(pn)
    cdef Py_UCS4 ch
    if n == 0:
        return False
    for i in range(n):
        ch = PyUnicode_READ_CHAR(pn, i)
        if ch == 0 or Py_UNICODE_ISSPACE(ch):
            return False
    return True


cdef inline bint _usable_id(const char* p, Py_ssize_t n) noexcept:
    return n > 0 and memchr(p, 0, n) == NULL


cdef inline void _gather(dict buckets, uint32_t mask, const char* ident, Py_ssize_t n,
                         const char* pn, Py_ssize_t m) except *:
    """Append ``ident NUL pn NUL`` to bucket ``crc32(ident) & mask`` (made when first needed)."""
    cdef object key = <uint32_t>(_crc32(<const unsigned char*>ident, n) & mask)
    cdef PyObject* found = PyDict_GetItem(buckets, key)
    cdef object buf
    cdef Py_ssize_t at
    cdef char* out
    if found == NULL:
        buf = bytearray()
        PyDict_SetItem(buckets, key, buf)
    else:
        buf = <object>found
    at = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, at + n + m + 2)
    out = PyByteArray_AS_STRING(buf) + at
    memcpy(out, ident, n)
    out[n] = 0
    memcpy(out + n + 1, pn, m)
    out[n + 1 + m] = 0


cdef inline int _refuse(object record) except -1:
    """A record the fast checks refused: check_identifiers says why (its ValueError, or
    the TypeError of an odd type); what it lets through (a card that is not a Card) is
    refused as encode_stored refuses it."""
    check_identifiers(record)
    raise StoredRecordError("permit record: cards is a tuple of Card")


def prepare_load(list records, bytes prefix, mask, dict ssn_buckets, dict cn_buckets, encode=None):
    """See ``_stored_py.prepare_load``: the same keys, values and buckets, the same errors."""
    cdef uint32_t umask = mask
    cdef list keys = []
    cdef list values = []
    cdef object record, pn, ssn, cards, card, cn, key
    cdef const char* pn_utf8
    cdef const char* id_utf8
    cdef Py_ssize_t pn_len, id_len, plen = PyBytes_GET_SIZE(prefix)
    if mask < 0 or mask > 0xFFFFFFFF:
        raise ValueError("mask is a 32-bit bucket mask")
    for record in records:
        if not PyObject_TypeCheck(record, <PyTypeObject*>_RECORD):
            raise TypeError("prepare_load takes PermitRecords")
        pn = _slot(record, _RECORD_SLOT[R_PN])
        ssn = _slot(record, _RECORD_SLOT[R_SSN])
        cards = _slot(record, _RECORD_SLOT[R_CARDS])
        # check_identifiers, in C; anything it would refuse goes to it for the words.
        if not PyUnicode_Check(pn) or not _usable_pn(pn):
            _refuse(record)
        if ssn is not None:
            if not PyUnicode_Check(ssn):
                _refuse(record)
            id_utf8 = PyUnicode_AsUTF8AndSize(ssn, &id_len)
            if not _usable_id(id_utf8, id_len):
                _refuse(record)
        if not (PyTuple_Check(cards) or PyList_Check(cards)):
            _refuse(record)
        for card in cards:
            if not PyObject_TypeCheck(card, <PyTypeObject*>_CARD):
                _refuse(record)
            cn = _slot(card, _CARD_SLOT[0])
            if not PyUnicode_Check(cn):
                _refuse(record)
            id_utf8 = PyUnicode_AsUTF8AndSize(cn, &id_len)
            if not _usable_id(id_utf8, id_len):
                _refuse(record)
        pn_utf8 = PyUnicode_AsUTF8AndSize(pn, &pn_len)
        key = PyBytes_FromStringAndSize(NULL, plen + pn_len)
        memcpy(PyBytes_AS_STRING(key), PyBytes_AS_STRING(prefix), plen)
        memcpy(PyBytes_AS_STRING(key) + plen, pn_utf8, pn_len)
        keys.append(key)
        if encode is None:
            try:
                values.append(_encode(record))
            except UnicodeEncodeError as exc:  # a lone surrogate
                raise StoredRecordError(f"permit record: a string is not UTF-8: {exc}") from None
        else:
            values.append(encode(record))
        if ssn is not None:
            id_utf8 = PyUnicode_AsUTF8AndSize(ssn, &id_len)
            _gather(ssn_buckets, umask, id_utf8, id_len, pn_utf8, pn_len)
        for card in cards:
            cn = _slot(card, _CARD_SLOT[0])
            id_utf8 = PyUnicode_AsUTF8AndSize(cn, &id_len)
            _gather(cn_buckets, umask, id_utf8, id_len, pn_utf8, pn_len)
    return keys, values


cdef struct _Field:
    const char* p     # the field's bytes (in the entries, or in the digits buffer)
    Py_ssize_t n
    const char* pn
    Py_ssize_t pn_n
    uint32_t hash


cdef inline char* _put_bulk(char* out, const char* p, Py_ssize_t n) noexcept:
    """``$<n>\\r\\n<bytes>\\r\\n`` (RESP's bulk string)."""
    out += snprintf(out, 24, "$%zd\r\n", n)
    memcpy(out, p, n)
    out += n
    out[0] = 13
    out[1] = 10
    return out + 2


def pack_lookup_bucket(bytes key, entries, bint hashed):
    """See ``_stored_py.pack_lookup_bucket``: the same bytes, None in the same cases."""
    cdef const char* data
    cdef Py_ssize_t size, at = 0, end, count = 0, i, j, slots, bound
    cdef _Field* fields = NULL
    cdef Py_ssize_t* table = NULL
    cdef char* digits = NULL
    cdef char* buffer = NULL
    cdef char* out
    cdef uint32_t h
    cdef Py_ssize_t k
    if isinstance(entries, bytearray):
        data = PyByteArray_AS_STRING(entries)
        size = PyByteArray_GET_SIZE(entries)
    elif PyBytes_Check(entries):
        data = PyBytes_AS_STRING(entries)
        size = PyBytes_GET_SIZE(entries)
    else:
        raise TypeError("look-up entries are bytes")
    # count the pairs (and check the shape: id NUL pn NUL ...)
    k = 0
    for i in range(size):
        if data[i] == 0:
            k += 1
    if k < 2 or k % 2 or data[size - 1] != 0:
        raise ValueError("look-up entries are id NUL pn NUL pairs")
    count = k // 2
    slots = 16
    while slots < 2 * count:
        slots *= 2
    try:
        fields = <_Field*>malloc(count * sizeof(_Field))
        table = <Py_ssize_t*>malloc(slots * sizeof(Py_ssize_t))
        digits = <char*>malloc(count * 11 + 1)
        if fields == NULL or table == NULL or digits == NULL:
            raise MemoryError()
        memset(table, 0xFF, slots * sizeof(Py_ssize_t))  # -1: empty
        for i in range(count):
            end = at
            while data[end] != 0:
                end += 1
            fields[i].p = data + at
            fields[i].n = end - at
            h = _crc32(<const unsigned char*>(data + at), end - at)
            at = end + 1
            end = at
            while data[end] != 0:
                end += 1
            fields[i].pn = data + at
            fields[i].pn_n = end - at
            at = end + 1
            if hashed:
                fields[i].n = snprintf(digits + 11 * i, 11, "%u", h)
                fields[i].p = digits + 11 * i
            fields[i].hash = h
            # a field met before: None (the caller joins the permit numbers)
            j = <Py_ssize_t>(h & <uint32_t>(slots - 1))
            while table[j] >= 0:
                k = table[j]
                if fields[k].n == fields[i].n and memcmp(fields[k].p, fields[i].p, fields[i].n) == 0:
                    return None
                j = (j + 1) & (slots - 1)
            table[j] = i
        bound = 64 + PyBytes_GET_SIZE(key) + count * 56 + size + count * 11
        buffer = <char*>malloc(bound)
        if buffer == NULL:
            raise MemoryError()
        out = buffer + snprintf(buffer, 32, "*%zd\r\n$4\r\nHSET\r\n", 2 + 2 * count)
        out = _put_bulk(out, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        for i in range(count):
            out = _put_bulk(out, fields[i].p, fields[i].n)
            out = _put_bulk(out, fields[i].pn, fields[i].pn_n)
        return PyBytes_FromStringAndSize(buffer, out - buffer)
    finally:
        free(fields)
        free(table)
        free(digits)
        free(buffer)
