# cython: language_level=3
"""Stored permit records (msgpack) straight to a look-up's JSON: the compiled twin.

The readable reference is ``_render_py.py``: decode each record with msgspec into a
``PermitRecord``, build the role's view, encode with msgspec. This twin gives the
same bytes without making a Python object per field: it walks each record's
msgpack once (a cursor of pointer, position and end; every read checked as
``n <= end - pos``; the cursor and the msgpack readers are
``verifier/lib/_msgpack_read.pxd``'s, shared with the stored-record codec), refuses exactly what msgspec's decode of ``PermitRecord``
refuses (wrong types, a Literal outside its values, invalid UTF-8, a 15th field, a
card that is not a pair, trailing bytes) and writes the JSON with msgspec's string
escapes. A 1,000-permit look-up: ~1 ms through the reference, ~0.1 ms here.

Record layouts. The legacy one (``verifier.index.records.PermitRecord``,
``array_like``): pn, n, nat, dob, cat, emp, vf, vt (str), v (int), status (str,
default "active"), ssn (str or nil, default nil), cards (array of [cn, status],
default empty), si and ci (the Status List entries: an int >= 0 or nil, default nil;
checked, not shown). The compact one (``verifier.index._stored_py``, which says why):
13 elements, v first (an int >= 0: how the layouts are told apart), no pn (the id
asked is the record's permit number), dates as day numbers (or the str as it was),
the category and the statuses as small integers; it is held to what
``verifier.index.stored.decode_stored`` accepts, and renders as the legacy value of
the same record does.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

from verifier.lib._msgpack_read cimport (
    Cursor, MP_BAD_UTF8, MP_NOT_ARRAY, MP_NOT_INT, MP_NOT_STR, MP_OUT_OF_RANGE, MP_TRUNCATED, array_of_int_first,
    check_utf8, is_int_head, need, read_array_head, read_int, read_str_head, read_uint,
)

from verifier.api.permits._render_errors import RecordError
from verifier.api.permits.schemas import FIELD_ORDER
from verifier.index.records import PermitRecord


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL


# FIELD_ORDER (PermitView's fields, in its order; defined in permits/schemas.py) gives
# each field its bit in a field mask.
cdef dict _BITS = {name: 1 << i for i, name in enumerate(FIELD_ORDER)}

# This twin's table: the keys as msgspec writes them, each after its comma (the first
# key of a view skips the comma), in the order _w_view writes them. It is C, so it
# cannot be made from FIELD_ORDER; it is checked against it below, at import.
cdef enum:
    FIELD_STATUS = 1          # the fields not read from a text slot of the record
    FIELD_V = 9
    FIELD_SSN = 10
    FIELD_CN = 11
    FIELD_CARD_STATUS = 12
    FIELD_COUNT = 13
cdef const char* _KEYS[FIELD_COUNT]
_KEYS[:] = [b',"pn":', b',"status":', b',"cat":', b',"emp":', b',"vf":', b',"vt":', b',"n":', b',"nat":',
            b',"dob":', b',"v":', b',"ssn":', b',"cn":', b',"card_status":']
cdef Py_ssize_t _KEY_LENGTHS[FIELD_COUNT]
for _i in range(FIELD_COUNT):
    _KEY_LENGTHS[_i] = len(_KEYS[_i])

# Record positions of the fields read straight from it (cn and card_status are derived).
cdef enum:
    F_PN = 0
    F_N = 1
    F_NAT = 2
    F_DOB = 3
    F_CAT = 4
    F_EMP = 5
    F_VF = 6
    F_VT = 7
    REQUIRED = 9      # pn .. v have no default
    MAX_FIELDS = 14   # forbid_unknown_fields: a 15th is an error

# PermitView's fields 0-8 in the record's text slots (field 1, status, is not a text slot).
cdef int _TEXT_SLOT[9]
_TEXT_SLOT[:] = [F_PN, -1, F_CAT, F_EMP, F_VF, F_VT, F_N, F_NAT, F_DOB]


def _check_table():
    """The compiled table against FIELD_ORDER and PermitRecord: a renderer that would
    write one field's value under another's name must not load."""
    keys = tuple((<bytes>_KEYS[i])[2:-2].decode() for i in range(FIELD_COUNT))
    named = {FIELD_STATUS: "status", FIELD_V: "v", FIELD_SSN: "ssn", FIELD_CN: "cn",
             FIELD_CARD_STATUS: "card_status"}
    slots = {i: PermitRecord.__struct_fields__[_TEXT_SLOT[i]] for i in range(9) if i != FIELD_STATUS}
    if (keys != FIELD_ORDER or any(FIELD_ORDER[i] != name for i, name in {**named, **slots}.items())):
        raise ImportError(f"verifier.api.permits._render_c: its field table {keys} (text slots {slots}) "
                          f"does not match PermitView's fields {FIELD_ORDER}: update the table and rebuild")


_check_table()

cdef const char* HEX = b"0123456789abcdef"

# Bytes a JSON string holds as they are: all but controls, '"' and '\\'.
cdef bint _PLAIN[256]
for _i in range(256):
    _PLAIN[_i] = _i >= 0x20 and _i != 0x22 and _i != 0x5C


cdef struct Span:
    const unsigned char* p
    Py_ssize_t n
    const unsigned char* limit  # reading up to here is safe (the record goes on past the string)


# Word-at-a-time scans (8 bytes; the byte order decides which bytes a mask keeps).
cdef uint64_t _ONE = 1
cdef bint _LITTLE_ENDIAN = (<unsigned char*>&_ONE)[0] == 1
cdef uint64_t _LOW_ONES = 0x0101010101010101ULL
cdef uint64_t _HIGH_BITS = 0x8080808080808080ULL


cdef inline uint64_t _load(const unsigned char* p) noexcept:
    cdef uint64_t word
    memcpy(&word, p, 8)
    return word


cdef inline bint _tail_word(const unsigned char* p, Py_ssize_t rem, const unsigned char* limit,
                            uint64_t filler, uint64_t* word) noexcept:
    # The last rem (1..7) bytes as one word, the bytes past them replaced by filler's; only
    # where 8 bytes can be read (a string inside its record), else False: go byte by byte.
    cdef uint64_t keep
    if not _LITTLE_ENDIAN or p + 8 > limit:
        return False
    keep = (_ONE << (8 * rem)) - 1
    word[0] = (_load(p) & keep) | (filler & ~keep)
    return True


cdef inline bint _ascii(const unsigned char* p, Py_ssize_t n, const unsigned char* limit) noexcept:
    cdef Py_ssize_t i = 0
    cdef uint64_t acc = 0, word
    cdef unsigned char tail = 0
    while i + 8 <= n:
        acc |= _load(p + i)
        i += 8
    if i < n:
        if _tail_word(p + i, n - i, limit, 0, &word):
            acc |= word
        else:
            while i < n:
                tail |= p[i]
                i += 1
    return (acc & _HIGH_BITS) == 0 and tail < 0x80


cdef inline bint _plain_word(uint64_t x) noexcept:
    # No byte below 0x20, no '"', no '\\' (SWAR: a byte test's result is exact for "any byte").
    cdef uint64_t quote = x ^ 0x2222222222222222ULL
    cdef uint64_t backslash = x ^ 0x5C5C5C5C5C5C5C5CULL
    return ((((x - 0x2020202020202020ULL) & ~x) | ((quote - _LOW_ONES) & ~quote)
             | ((backslash - _LOW_ONES) & ~backslash)) & _HIGH_BITS) == 0


cdef struct Record:
    Span text[8]          # pn, n, nat, dob, cat, emp, vf, vt
    bint compact          # the compact layout: no pn in it (text[F_PN] is the id's, set by the caller)
    unsigned char days[30]  # the compact layout's dates (dob, vf, vt) formatted, 10 bytes each
    bint v_negative
    uint64_t v_magnitude
    Span status
    bint has_ssn
    Span ssn
    bint has_cn
    Span cn
    Span card_status


cdef struct Buffer:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity


# --- reading ---------------------------------------------------------------------
# The cursor and the msgpack readers are verifier/lib/_msgpack_read.pxd's (shared with the
# stored-record codec); they return an error code, raised here as RecordError (_fail).

cdef int _fail(int code) except -1:
    # A shared reader's error code, as this module's error and words.
    if code == MP_TRUNCATED:
        raise RecordError("permit record truncated")
    if code == MP_NOT_ARRAY:
        raise RecordError("permit record: expected an array")
    if code == MP_NOT_INT:
        raise RecordError("permit record: expected an integer")
    if code == MP_NOT_STR:
        raise RecordError("permit record: expected a string")
    if code == MP_BAD_UTF8:
        raise RecordError("permit record holds invalid UTF-8")
    if code == MP_OUT_OF_RANGE:
        raise RecordError("permit record: an integer out of range")
    raise AssertionError(f"verifier.api.permits._render_c: unexpected reader status {code}")


cdef inline int _need(Cursor* c, Py_ssize_t n) except -1:
    cdef int status = need(c, n)
    if status:
        return _fail(status)
    return 0


cdef inline int _read_str(Cursor* c, Span* out) except -1:
    # A str, as a span of the record's bytes, checked to be strict UTF-8 (as msgspec checks it).
    cdef Py_ssize_t n
    cdef int status = read_str_head(c, &n)
    if status:
        return _fail(status)
    out.p = c.p + c.pos
    out.n = n
    out.limit = c.p + c.end
    c.pos += n
    if not _ascii(out.p, n, out.limit):
        status = check_utf8(out.p, n)
        if status:
            return _fail(status)
    return 0


cdef inline int _read_array(Cursor* c, Py_ssize_t* count) except -1:
    cdef int status = read_array_head(c, count)
    if status:
        return _fail(status)
    return 0


cdef inline int _read_int(Cursor* c, bint* negative, uint64_t* magnitude) except -1:
    cdef int status = read_int(c, negative, magnitude)
    if status:
        return _fail(status)
    return 0


cdef inline uint64_t _read_small(Cursor* c, uint64_t most) except? 0xFFFFFFFFFFFFFFFF:
    # The compact layout's category and statuses: an integer in 0 .. most.
    cdef uint64_t value
    cdef int status = read_uint(c, most, &value)
    if status:
        _fail(status)
    return value


cdef inline bint _is(Span s, const char* text, Py_ssize_t n) noexcept:
    return s.n == n and memcmp(s.p, text, n) == 0


cdef inline bint _same(Span a, Span b) noexcept:
    return a.n == b.n and memcmp(a.p, b.p, a.n) == 0


cdef inline void _constant(Span* out, const char* text) noexcept:
    out.p = <const unsigned char*>text
    out.n = len(text)
    out.limit = out.p + out.n


cdef enum:
    COMPACT_FIELDS = 13
    MIN_DAY = -719162     # 0001-01-01
    MAX_DAY = 2932896     # 9999-12-31

cdef const char* _CATEGORIES[3]
_CATEGORIES[:] = [b"A", b"B", b"C"]
cdef const char* _STATUSES[2]
_STATUSES[:] = [b"active", b"cancelled"]
cdef const char* _CARD_STATUSES[3]
_CARD_STATUSES[:] = [b"active", b"lost", b"replaced"]


cdef inline int _read_card(Cursor* c, Span* cn, Span* status, bint compact) except -1:
    # Card: cn and status, both required, nothing else; the status a str (legacy) or its
    # number (compact), either way one of _CARD_STATUSES.
    cdef Py_ssize_t count
    _read_array(c, &count)
    if count != 2:
        raise RecordError("permit record: a card is [cn, status]")
    _read_str(c, cn)
    if compact:
        _constant(status, _CARD_STATUSES[_read_small(c, 2)])
    else:
        _read_str(c, status)
        if not (_is(status[0], b"active", 6) or _is(status[0], b"lost", 4) or _is(status[0], b"replaced", 8)):
            raise RecordError("permit record: unknown card status")
    return 0


cdef inline int _read_cards(Cursor* c, Record* r, bint compact) except -1:
    # The cards (an array of them, in either layout): the active one (the first, should
    # there be two) and its status, that of the first card with its number
    # (PermitRecord.card_status). Every read is checked: a count from a damaged value ends
    # at its end. Inlined into _parse and _parse_compact, each with its constant layout.
    cdef Py_ssize_t cards, i, cards_at, cards_end
    cdef Span cn, status
    _read_array(c, &cards)
    cards_at = c.pos
    for i in range(cards):
        _read_card(c, &cn, &status, compact)
        if not r.has_cn and status.n == 6:  # "active": the one status of 6 bytes (_read_card checked it)
            r.has_cn = True
            r.cn = cn
    if r.has_cn:
        # walk the (already checked) cards again, then come back to where they end
        cards_end = c.pos
        c.pos = cards_at
        for i in range(cards):
            _read_card(c, &cn, &status, compact)
            if _same(cn, r.cn):
                r.card_status = status
                break
        c.pos = cards_end
    return 0


cdef inline int _read_status_index(Cursor* c) except -1:
    # records.StatusIndex | None: nil, or an integer >= 0 in any of msgpack's int forms
    cdef bint negative
    cdef uint64_t magnitude
    _need(c, 1)
    if c.p[c.pos] == 0xC0:
        c.pos += 1
        return 0
    _read_int(c, &negative, &magnitude)
    if negative:
        raise RecordError("permit record: a status list index is below 0")
    return 0


cdef int _parse(const unsigned char* data, Py_ssize_t size, Record* r) except -1:
    cdef Cursor c
    cdef Py_ssize_t count, i
    cdef Span cat
    c.p = data
    c.pos = 0
    c.end = size
    r.compact = False
    _read_array(&c, &count)
    if count < REQUIRED or count > MAX_FIELDS:
        raise RecordError("permit record: wrong number of fields")
    for i in range(8):
        _read_str(&c, &r.text[i])
    cat = r.text[F_CAT]
    if not (_is(cat, b"A", 1) or _is(cat, b"B", 1) or _is(cat, b"C", 1)):
        raise RecordError("permit record: unknown category")
    _read_int(&c, &r.v_negative, &r.v_magnitude)
    r.status.p = <const unsigned char*>b"active"
    r.status.n = 6
    r.status.limit = r.status.p + 6
    r.has_ssn = False
    r.has_cn = False
    if count > 9:
        _read_str(&c, &r.status)
        if not (_is(r.status, b"active", 6) or _is(r.status, b"cancelled", 9)):
            raise RecordError("permit record: unknown status")
    if count > 10:
        _need(&c, 1)
        if c.p[c.pos] == 0xC0:  # nil
            c.pos += 1
        else:
            _read_str(&c, &r.ssn)
            r.has_ssn = True
    if count > 11:
        _read_cards(&c, r, False)
    for i in range(12, count):  # si, ci: StatusIndex | None
        _read_status_index(&c)
    if c.pos != c.end:
        raise RecordError("permit record: trailing bytes")
    return 0


# --- the compact layout ------------------------------------------------------------

cdef inline bint _compact(const unsigned char* p, Py_ssize_t size) noexcept:
    # As verifier.index._stored_py.is_compact: an array whose first element is an integer.
    return array_of_int_first(p, size)


cdef inline int _read_date(Cursor* c, Span* out, unsigned char* buffer) except -1:
    # A day number (years 1-9999), formatted into buffer (Howard Hinnant's civil_from_days),
    # or a str as it is.
    cdef bint negative
    cdef uint64_t magnitude
    cdef int64_t z, era, doe, yoe, doy, mp, y, m, d
    _need(c, 1)
    if not is_int_head(c.p[c.pos]):
        return _read_str(c, out)
    _read_int(c, &negative, &magnitude)
    if (negative and magnitude > -MIN_DAY) or (not negative and magnitude > MAX_DAY):
        raise RecordError("permit record: a day number out of range")
    z = (-<int64_t>magnitude if negative else <int64_t>magnitude) + 719468  # > 0 in the range
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    buffer[0] = <unsigned char>(48 + y // 1000)
    buffer[1] = <unsigned char>(48 + y // 100 % 10)
    buffer[2] = <unsigned char>(48 + y // 10 % 10)
    buffer[3] = <unsigned char>(48 + y % 10)
    buffer[4] = b'-'
    buffer[5] = <unsigned char>(48 + m // 10)
    buffer[6] = <unsigned char>(48 + m % 10)
    buffer[7] = b'-'
    buffer[8] = <unsigned char>(48 + d // 10)
    buffer[9] = <unsigned char>(48 + d % 10)
    out.p = buffer
    out.n = 10
    out.limit = buffer + 10
    return 0


cdef int _parse_compact(const unsigned char* data, Py_ssize_t size, Record* r) except -1:
    # Everything but the pn (text[F_PN]: the caller's, the id asked).
    cdef Cursor c
    cdef Py_ssize_t count
    c.p = data
    c.pos = 0
    c.end = size
    _read_array(&c, &count)
    if count != COMPACT_FIELDS:
        raise RecordError("permit record: a compact value has 13 elements")
    r.compact = True
    _read_int(&c, &r.v_negative, &r.v_magnitude)
    if r.v_negative:
        raise RecordError("permit record: v below 0")
    _read_str(&c, &r.text[F_N])
    _read_str(&c, &r.text[F_NAT])
    _read_date(&c, &r.text[F_DOB], r.days)
    _constant(&r.text[F_CAT], _CATEGORIES[_read_small(&c, 2)])
    _read_str(&c, &r.text[F_EMP])
    _read_date(&c, &r.text[F_VF], r.days + 10)
    _read_date(&c, &r.text[F_VT], r.days + 20)
    _constant(&r.status, _STATUSES[_read_small(&c, 1)])
    r.has_ssn = False
    r.has_cn = False
    _need(&c, 1)
    if c.p[c.pos] == 0xC0:  # nil
        c.pos += 1
    else:
        _read_str(&c, &r.ssn)
        r.has_ssn = True
    _read_cards(&c, r, True)
    _read_status_index(&c)  # si
    _read_status_index(&c)  # ci
    if c.pos != c.end:
        raise RecordError("permit record: trailing bytes")
    return 0


# --- writing ---------------------------------------------------------------------

cdef inline int _reserve(Buffer* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t wanted = b.length + extra
    cdef Py_ssize_t capacity = b.capacity if b.capacity else 4096
    cdef char* grown
    if wanted <= b.capacity:
        return 0
    while capacity < wanted:
        capacity *= 2
    grown = <char*>PyMem_Realloc(b.data, capacity)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.capacity = capacity
    return 0


cdef inline char* _w(char* out, const char* s, Py_ssize_t n) noexcept:
    memcpy(out, s, n)
    return out + n


cdef inline char* _w_json_str(char* out, Span text) noexcept:
    # msgspec's escapes: \" \\ \b \t \n \f \r, other controls \u00XX; the rest as is (UTF-8).
    # Room for 6 * n + 2 bytes is the caller's to reserve.
    cdef const unsigned char* s = text.p
    cdef Py_ssize_t n = text.n
    cdef Py_ssize_t i, run = 0
    cdef unsigned char ch
    cdef uint64_t word
    out[0] = b'"'
    out += 1
    # the plain run, a word at a time: usually the whole string
    while run + 8 <= n and _plain_word(_load(s + run)):
        run += 8
    if run + 8 > n and run < n and _tail_word(s + run, n - run, text.limit, 0x4141414141414141ULL, &word) \
            and _plain_word(word):
        run = n
    memcpy(out, s, run)
    out += run
    for i in range(run, n):
        ch = s[i]
        if _PLAIN[ch]:
            out[0] = <char>ch
            out += 1
            continue
        out[0] = b'\\'
        if ch == 0x22 or ch == 0x5C:
            out[1] = <char>ch
        elif ch == 0x08:
            out[1] = b'b'
        elif ch == 0x09:
            out[1] = b't'
        elif ch == 0x0A:
            out[1] = b'n'
        elif ch == 0x0C:
            out[1] = b'f'
        elif ch == 0x0D:
            out[1] = b'r'
        else:
            out[1] = b'u'
            out[2] = b'0'
            out[3] = b'0'
            out[4] = HEX[ch >> 4]
            out[5] = HEX[ch & 0x0F]
            out += 4
        out += 2
    out[0] = b'"'
    return out + 1


cdef inline char* _w_int(char* out, bint negative, uint64_t magnitude) noexcept:
    cdef char digits[21]
    cdef int at = 21
    while True:
        at -= 1
        digits[at] = <char>(48 + magnitude % 10)
        magnitude //= 10
        if magnitude == 0:
            break
    if negative:
        at -= 1
        digits[at] = b'-'
    return _w(out, digits + at, 21 - at)


cdef inline char* _w_field(char* out, int field, bint* first) noexcept:
    if first[0]:
        first[0] = False
        return _w(out, _KEYS[field] + 1, _KEY_LENGTHS[field] - 1)
    return _w(out, _KEYS[field], _KEY_LENGTHS[field])


cdef char* _w_view(char* out, Record* r, unsigned int mask) noexcept:
    # The fields of the mask in PermitView's order; absent values left out (omit_defaults).
    cdef bint first = True
    out[0] = b"{"
    out += 1
    cdef int field
    for field in range(FIELD_V):  # pn .. dob: texts read straight from the record (but status)
        if mask & (1u << field):
            out = _w_json_str(_w_field(out, field, &first),
                              r.status if field == FIELD_STATUS else r.text[_TEXT_SLOT[field]])
    if mask & (1 << FIELD_V):
        out = _w_int(_w_field(out, FIELD_V, &first), r.v_negative, r.v_magnitude)
    if mask & (1 << FIELD_SSN) and r.has_ssn:
        out = _w_json_str(_w_field(out, FIELD_SSN, &first), r.ssn)
    if mask & (1 << FIELD_CN) and r.has_cn:
        out = _w_json_str(_w_field(out, FIELD_CN, &first), r.cn)
    if mask & (1 << FIELD_CARD_STATUS) and r.has_cn:
        out = _w_json_str(_w_field(out, FIELD_CARD_STATUS, &first), r.card_status)
    out[0] = b"}"
    return out + 1


# --- the entry point ----------------------------------------------------------------

def field_mask(fields):
    """The mask of a field set (names of PermitView's fields)."""
    cdef unsigned int mask = 0
    for name in fields:
        try:
            mask |= <unsigned int>_BITS[name]
        except KeyError:
            raise ValueError(f"not a field of PermitView: {name!r}") from None
    return mask


def render_found(list ids, list values, tuple fields, object employers):
    """See ``_render_py.render_found``: the same contract, the same bytes."""
    cdef Py_ssize_t count = len(ids)
    cdef Py_ssize_t i, id_size
    cdef unsigned int mask = field_mask(fields)
    cdef Buffer b
    cdef Record r
    cdef const char* id_utf8
    cdef const unsigned char* data
    cdef Py_ssize_t size
    cdef Span id_span
    cdef char* out
    cdef bint first = True
    cdef list missing = []
    cdef list shown = []
    if len(values) != count:
        raise ValueError("ids and values differ in length")
    b.data = NULL
    b.length = 0
    b.capacity = 0
    try:
        _reserve(&b, count * 320)
        for i in range(count):
            identifier = ids[i]
            raw = values[i]
            if raw is None:
                missing.append(identifier)
                continue
            if not PyBytes_Check(raw):
                raise TypeError("a stored record is bytes or None")
            if not PyUnicode_Check(identifier):
                raise TypeError("an identifier is a str")
            data = <const unsigned char*>PyBytes_AS_STRING(raw)
            size = PyBytes_GET_SIZE(raw)
            if _compact(data, size):
                _parse_compact(data, size, &r)
            else:
                _parse(data, size, &r)
            if employers is not None:
                employer = PyUnicode_DecodeUTF8(<const char*>r.text[F_EMP].p, r.text[F_EMP].n, NULL)
                if employer not in employers:
                    missing.append(identifier)  # another employer's permit looks exactly like an unknown one
                    continue
            id_utf8 = PyUnicode_AsUTF8AndSize(identifier, &id_size)
            if r.compact:  # a compact value is the record of the permit asked
                r.text[F_PN].p = <const unsigned char*>id_utf8
                r.text[F_PN].n = id_size
                r.text[F_PN].limit = r.text[F_PN].p + id_size
            # Room for the worst case: every byte of the record's strings and of the id
            # (twice: the pn of a compact value is the id) escaped to 6, a compact value's
            # day numbers and status numbers as text (under 6 * 30 bytes), plus the keys and
            # punctuation (under 256 bytes).
            _reserve(&b, 6 * (PyBytes_GET_SIZE(raw) + 2 * id_size + 30) + 256)
            out = b.data + b.length
            if not first:
                out[0] = b","
                out += 1
            first = False
            out = _w(out, b'{"id":', 6)
            id_span.p = <const unsigned char*>id_utf8
            id_span.n = id_size
            id_span.limit = id_span.p + id_size
            out = _w_json_str(out, id_span)
            out = _w(out, b',"permit":', 10)
            out = _w_view(out, &r, mask)
            out[0] = b"}"
            b.length = out + 1 - b.data
            if r.compact or (r.text[F_PN].n == id_size and memcmp(r.text[F_PN].p, id_utf8, id_size) == 0):
                shown.append(identifier)
            else:
                shown.append(PyUnicode_DecodeUTF8(<const char*>r.text[F_PN].p, r.text[F_PN].n, NULL))
        items = PyBytes_FromStringAndSize(b.data, b.length)
    finally:
        PyMem_Free(b.data)
    return items, missing, shown
