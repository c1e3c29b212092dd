# cython: language_level=3
"""The compiled twin of ``fastpath/_verify_py.py``: same names, same verdicts.

WIRE-FORMAT 1-4, 6 and the status claim of 8, in the order of WIRE-FORMAT 7:

    prefix -> base45 -> zlib -> CBOR -> COSE structure -> header (alg, crit, kid)
    -> key known (a permit issuer's) -> key not revoked -> signature -> claims
    (iss, exp, nbf, iat, cti, the permit or card map, the status claim) -> key
    allowed for iss -> times

The byte work (base45, inflate, CBOR validation, COSE parsing, the signed bytes,
Ed25519) runs in C without the GIL and without Python objects; Python objects
are made only for what the verdict carries (claims, permit, kid). The Python
twin is the reference: where the two could disagree, this one follows it check
for check and reason for reason (the shared test suite and the fuzz harness
compare them).
"""

import time as _time

from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.string cimport memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.long cimport PyLong_FromUnsignedLongLong, PyLong_FromLongLong
from cpython.object cimport PyObject, PyTypeObject
from cpython.set cimport PySet_Contains

from fastpath._reasons_c cimport Reason
from fastpath._base45_c cimport base45_decode, BASE45_MAX_TEXT, BASE45_MAX_BYTES
from fastpath._inflate_c cimport zlib_inflate_bounded, INFLATE_MAX, INFLATE_BUFFER
from fastpath._cbor_c cimport (
    Cursor, Head, read_head, validate_document, skip_valid,
    MAJOR_UINT, MAJOR_NINT, MAJOR_BYTES, MAJOR_TEXT, MAJOR_ARRAY, MAJOR_MAP, MAJOR_TAG,
)
from fastpath._sodium_c cimport ed25519_verify

from fastpath import codes
from fastpath._trust import TrustList
from fastpath._verdict import StatusRef, Verdict
# The verdict cache lives in the TrustList, shared by both twins: one entry type, one eviction.
from fastpath._cache import CacheEntry, cache_put

__all__ = ["verify_qr", "verify_card_certificate", "check_card_signature", "verify_card"]

cdef extern from "Python.h":
    int PyUnicode_READY(object text) except -1
    int PyUnicode_KIND(object text)
    void* PyUnicode_DATA(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index) nogil
    enum:
        PyUnicode_1BYTE_KIND
        PyUnicode_2BYTE_KIND
        PyUnicode_4BYTE_KIND
    long long PyLong_AsLongLongAndOverflow(object value, int* overflow) except? -1

cdef extern from *:
    """
    typedef __int128 fastpath_int128;

    /* A str from validated UTF-8: ASCII (the usual case) is copied straight
       into a new compact string, anything else goes through the decoder. */
    static PyObject *fastpath_text(const char *s, Py_ssize_t n) {
        Py_ssize_t i;
        PyObject *text;
        for (i = 0; i < n; i++) {
            if ((unsigned char)s[i] & 0x80)
                return PyUnicode_DecodeUTF8(s, n, NULL);
        }
        text = PyUnicode_New(n, 127);
        if (text != NULL)
            memcpy(PyUnicode_DATA(text), s, n);
        return text;
    }
    """
    ctypedef long long int128 "fastpath_int128"
    object fastpath_text(const char* s, Py_ssize_t n)
    dict _PyDict_NewPresized(Py_ssize_t minused)

# --- limits (the same as the Python twin's) -----------------------------------
cdef enum:
    MAX_CARD_CERTIFICATE = 4096   # a card certificate is a COSE message like the QR's
    LEEWAY = 60                   # WIRE-FORMAT 3: clock skew, seconds
    ES1_MAX_LIFETIME = 300        # WIRE-FORMAT 3
    # Sig_structure: 12 bytes of prefix, two bstr heads of at most 5 bytes, h''.
    SIG_STRUCTURE_MAX = 12 + 5 + INFLATE_MAX + 1 + 5 + INFLATE_MAX

cdef enum Profile:
    P_WP1 = 1
    P_ES1 = 2
    P_CARD = 3

# --- reasons: Reason -> (result code, (reason,)) --------------------------------
cdef list _RESULT = [None] * <int>Reason.REASON_COUNT
cdef list _REASONS = [None] * <int>Reason.REASON_COUNT


cdef void _reason(Reason reason, str result, str text):
    _RESULT[<int>reason] = result
    _REASONS[<int>reason] = (text,)


_reason(Reason.PREFIX_UNKNOWN, codes.UNSUPPORTED, codes.R_PREFIX_UNKNOWN)
_reason(Reason.QR_TOO_LONG, codes.MALFORMED, codes.R_QR_TOO_LONG)
_reason(Reason.BASE45_ALPHABET, codes.MALFORMED, codes.R_BASE45_ALPHABET)
_reason(Reason.BASE45_LENGTH, codes.MALFORMED, codes.R_BASE45_LENGTH)
_reason(Reason.BASE45_VALUE, codes.MALFORMED, codes.R_BASE45_VALUE)
_reason(Reason.ZLIB_HEADER, codes.MALFORMED, codes.R_ZLIB_HEADER)
_reason(Reason.ZLIB_DATA, codes.MALFORMED, codes.R_ZLIB_DATA)
_reason(Reason.ZLIB_TRUNCATED, codes.MALFORMED, codes.R_ZLIB_TRUNCATED)
_reason(Reason.ZLIB_TRAILING, codes.MALFORMED, codes.R_ZLIB_TRAILING)
_reason(Reason.ZLIB_TOO_LARGE, codes.MALFORMED, codes.R_ZLIB_TOO_LARGE)
_reason(Reason.CBOR_TRUNCATED, codes.MALFORMED, codes.R_CBOR_TRUNCATED)
_reason(Reason.CBOR_TRAILING, codes.MALFORMED, codes.R_CBOR_TRAILING)
_reason(Reason.CBOR_INDEFINITE, codes.MALFORMED, codes.R_CBOR_INDEFINITE)
_reason(Reason.CBOR_DEPTH, codes.MALFORMED, codes.R_CBOR_DEPTH)
_reason(Reason.CBOR_DUPLICATE_KEY, codes.MALFORMED, codes.R_CBOR_DUPLICATE_KEY)
_reason(Reason.CBOR_NON_PREFERRED, codes.MALFORMED, codes.R_CBOR_NON_PREFERRED)
_reason(Reason.CBOR_INVALID, codes.MALFORMED, codes.R_CBOR_INVALID)
_reason(Reason.CBOR_TAG, codes.MALFORMED, codes.R_CBOR_TAG)
_reason(Reason.COSE_STRUCTURE, codes.MALFORMED, codes.R_COSE_STRUCTURE)
_reason(Reason.COSE_PROTECTED, codes.MALFORMED, codes.R_COSE_PROTECTED)
_reason(Reason.COSE_SIGNATURE_LENGTH, codes.MALFORMED, codes.R_COSE_SIGNATURE_LENGTH)
_reason(Reason.HEADER_ALG_MISSING, codes.UNSUPPORTED, codes.R_HEADER_ALG_MISSING)
_reason(Reason.HEADER_ALG_UNSUPPORTED, codes.UNSUPPORTED, codes.R_HEADER_ALG_UNSUPPORTED)
_reason(Reason.HEADER_CRIT, codes.UNSUPPORTED, codes.R_HEADER_CRIT)
_reason(Reason.HEADER_KID_MISSING, codes.MALFORMED, codes.R_HEADER_KID_MISSING)
_reason(Reason.HEADER_KID_INVALID, codes.MALFORMED, codes.R_HEADER_KID_INVALID)
_reason(Reason.KEY_UNKNOWN, codes.UNKNOWN_KEY, codes.R_KEY_UNKNOWN)
_reason(Reason.KEY_REVOKED, codes.KEY_REVOKED, codes.R_KEY_REVOKED)
_reason(Reason.KEY_ISSUER, codes.UNKNOWN_KEY, codes.R_KEY_ISSUER)
_reason(Reason.KEY_USE, codes.UNKNOWN_KEY, codes.R_KEY_USE)
_reason(Reason.SIGNATURE_INVALID, codes.BAD_SIGNATURE, codes.R_SIGNATURE_INVALID)
_reason(Reason.CLAIMS_NOT_MAP, codes.MALFORMED, codes.R_CLAIMS_NOT_MAP)
_reason(Reason.TIME_NOT_YET_VALID, codes.NOT_YET_VALID, codes.R_TIME_NOT_YET_VALID)
_reason(Reason.TIME_EXPIRED, codes.EXPIRED, codes.R_TIME_EXPIRED)
_reason(Reason.TIME_LIFETIME, codes.MALFORMED, codes.R_TIME_LIFETIME)
_reason(Reason.INPUT_TYPE, codes.MALFORMED, codes.R_INPUT_TYPE)
_reason(Reason.CARD_CHALLENGE, codes.CHALLENGE_INVALID, codes.R_CARD_CHALLENGE)
_reason(Reason.CARD_SIGNATURE_LENGTH, codes.MALFORMED, codes.R_CARD_SIGNATURE_LENGTH)
_reason(Reason.CARD_SIGNATURE, codes.BAD_SIGNATURE, codes.R_CARD_SIGNATURE)
_reason(Reason.CARD_TOO_LONG, codes.MALFORMED, codes.R_CARD_TOO_LONG)
_RESULT[<int>Reason.OK] = codes.VALID
_REASONS[<int>Reason.OK] = ()
_RESULT[<int>Reason.CLAIMS] = codes.MALFORMED  # its reasons: the _Claims' failure



def _reason_text(int number) -> str:
    """For tests of the layers: the reason text of a Reason number (what the
    modules' Python-level test entries return on failure)."""
    return (<tuple>_REASONS[number])[0]


cdef object _PROFILE_NAMES = (None, codes.PROFILE_WP1, codes.PROFILE_ES1, codes.PROFILE_CARD)

# Claim reasons (WIRE-FORMAT 3 and 6), made once.


cdef tuple _claim(str area, str kind, str name):
    return (codes.claim_reason(area, kind, name),)


cdef tuple MISSING_ISS = _claim("claims", "missing", "iss")
cdef tuple TYPE_ISS = _claim("claims", "type", "iss")
cdef tuple MISSING_EXP = _claim("claims", "missing", "exp")
cdef tuple TYPE_EXP = _claim("claims", "type", "exp")
cdef tuple TYPE_NBF = _claim("claims", "type", "nbf")
cdef tuple MISSING_IAT = _claim("claims", "missing", "iat")
cdef tuple TYPE_IAT = _claim("claims", "type", "iat")
cdef tuple MISSING_CTI = _claim("claims", "missing", "cti")
cdef tuple TYPE_CTI = _claim("claims", "type", "cti")
cdef tuple MISSING_PERMIT = _claim("claims", "missing", "permit")
cdef tuple TYPE_PERMIT = _claim("claims", "type", "permit")
cdef tuple MISSING_CARD = _claim("claims", "missing", "card")
cdef tuple TYPE_CARD = _claim("claims", "type", "card")
cdef tuple PERMIT_TYPE_KEY = _claim("permit", "type", "key")
cdef tuple CARD_TYPE_KEY = _claim("card", "type", "key")
# WIRE-FORMAT 8: the status claim.
cdef tuple TYPE_STATUS = _claim("claims", "type", "status")
cdef tuple STATUS_TYPE_KEY = _claim("status", "type", "key")
cdef tuple MISSING_STATUS_LIST = _claim("status", "missing", "status_list")
cdef tuple TYPE_STATUS_LIST = _claim("status", "type", "status_list")
cdef tuple MISSING_IDX = _claim("status", "missing", "idx")
cdef tuple TYPE_IDX = _claim("status", "type", "idx")
cdef tuple MISSING_URI = _claim("status", "missing", "uri")
cdef tuple TYPE_URI = _claim("status", "type", "uri")
# A StatusRef made as the tuple it is: NamedTuple's own __new__ is a Python call.
cdef object _TUPLE_NEW = tuple.__new__

# --- the permit and card maps -------------------------------------------------------
# WIRE-FORMAT 3: the permit map's keys in the table's order (the order of checks).
cdef enum:  # permit keys
    K_PN = 0
    K_N
    K_NAT
    K_DOB
    K_CAT
    K_EMP
    K_VF
    K_VT
    K_V
    K_SSN
    K_CN
    PERMIT_KEY_COUNT

cdef tuple PERMIT_KEYS = ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "v", "ssn", "cn")
cdef list _PERMIT_MISSING = [_claim("permit", "missing", k) for k in PERMIT_KEYS]
cdef list _PERMIT_TYPE = [_claim("permit", "type", k) for k in PERMIT_KEYS]


# WIRE-FORMAT 6: the card map's keys, in the order of checks.
cdef enum:  # card keys
    C_CN = 0
    C_SSN
    C_PN
    C_CPK
    CARD_KEY_COUNT

cdef tuple CARD_KEYS = ("cn", "ssn", "pn", "cpk")
cdef list _CARD_MISSING = [_claim("card", "missing", k) for k in CARD_KEYS]
cdef list _CARD_TYPE = [_claim("card", "type", k) for k in CARD_KEYS]

cdef str S_ISS = "iss"
cdef str S_EXP = "exp"
cdef str S_NBF = "nbf"
cdef str S_IAT = "iat"
cdef str S_CTI = "cti"
cdef str S_REVOKED = "revoked"

cdef bytes CARD_AUTH_DOMAIN = b"SSC-AUTH-1"   # WIRE-FORMAT 6: what the card signs, before the challenge


# --- WIRE-FORMAT 1: prefix, base45, zlib --------------------------------------------

cdef Reason _decode_qr(int kind, const void* data, Py_ssize_t n,
                       uint8_t* message, Py_ssize_t* message_len) noexcept nogil:
    """base45 then bounded inflate of the text after the prefix (n characters)."""
    cdef uint8_t compressed[BASE45_MAX_BYTES]
    cdef Py_ssize_t compressed_len = 0
    cdef Reason reason
    if n > BASE45_MAX_TEXT:
        return Reason.QR_TOO_LONG
    if kind == PyUnicode_1BYTE_KIND:
        reason = base45_decode(<const unsigned char*>data, n, compressed, &compressed_len)
    elif kind == PyUnicode_2BYTE_KIND:
        reason = base45_decode(<const unsigned short*>data, n, compressed, &compressed_len)
    else:
        reason = base45_decode(<const unsigned int*>data, n, compressed, &compressed_len)
    if reason != Reason.OK:
        return reason
    return zlib_inflate_bounded(compressed, compressed_len, message, message_len)


# --- WIRE-FORMAT 2: COSE_Sign1 --------------------------------------------------------

cdef struct Cose:
    const uint8_t* protected        # the protected bstr's content
    Py_ssize_t protected_len
    const uint8_t* payload
    Py_ssize_t payload_len
    const uint8_t* signature        # 64 bytes
    const uint8_t* kid              # 8 bytes, once the header was read
    Reason payload_reason           # the payload's CBOR, validated once the signature held


cdef inline bint _span_is(const uint8_t* start, const uint8_t* end, uint8_t byte) noexcept nogil:
    """The item [start, end) is the one-byte encoding ``byte``."""
    return end - start == 1 and start[0] == byte


cdef void _find_labels(const uint8_t* start, const uint8_t* end, const uint8_t** alg,
                       bint* crit, const uint8_t** kid) noexcept nogil:
    """In a validated map, the values of labels 1 (alg) and 4 (kid), and whether 2 (crit) is there."""
    cdef Cursor cursor
    cdef Head head
    cdef uint64_t i, count
    cdef const uint8_t* key
    cursor.pos = start
    cursor.end = end
    read_head(&cursor, &head)
    count = head.arg
    for i in range(count):
        key = cursor.pos
        skip_valid(&cursor)
        if _span_is(key, cursor.pos, 0x01):
            if alg != NULL:
                alg[0] = cursor.pos
        elif _span_is(key, cursor.pos, 0x02):
            crit[0] = True
        elif _span_is(key, cursor.pos, 0x04):
            kid[0] = cursor.pos
        skip_valid(&cursor)


cdef Reason _parse_cose(const uint8_t* data, Py_ssize_t n, Cose* cose) noexcept nogil:
    """WIRE-FORMAT 2 up to the kid: CBOR, structure, signature length, header."""
    cdef Cursor cursor
    cdef Head head, item
    cdef Reason reason
    cdef const uint8_t* unprotected
    cdef const uint8_t* unprotected_end
    cdef const uint8_t* signature
    cdef Py_ssize_t signature_len
    cdef const uint8_t* alg = NULL
    cdef const uint8_t* kid = NULL
    cdef const uint8_t* unprotected_kid = NULL
    cdef bint crit = False
    cdef bint structure_ok = True
    reason = validate_document(data, n, True)
    if reason != Reason.OK:
        return reason
    cursor.pos = data
    cursor.end = data + n
    read_head(&cursor, &head)
    if head.major == MAJOR_TAG:
        read_head(&cursor, &head)  # the one tag 18 the validator let through
    # [protected: bstr, unprotected: map, payload: bstr, signature: bstr]
    if head.major != MAJOR_ARRAY or head.arg != 4:
        return Reason.COSE_STRUCTURE
    read_head(&cursor, &item)
    if item.major == MAJOR_BYTES:
        cose.protected = cursor.pos
        cose.protected_len = <Py_ssize_t>item.arg
        cursor.pos += item.arg
    else:
        structure_ok = False
        cursor.pos = item.start
        skip_valid(&cursor)
    unprotected = cursor.pos
    skip_valid(&cursor)
    unprotected_end = cursor.pos
    if unprotected[0] >> 5 != MAJOR_MAP:
        structure_ok = False
    read_head(&cursor, &item)
    if item.major == MAJOR_BYTES:
        cose.payload = cursor.pos
        cose.payload_len = <Py_ssize_t>item.arg
        cursor.pos += item.arg
    else:
        structure_ok = False  # payload nil (detached) is not allowed
        cursor.pos = item.start
        skip_valid(&cursor)
    read_head(&cursor, &item)
    if item.major != MAJOR_BYTES:
        structure_ok = False
    if not structure_ok:
        return Reason.COSE_STRUCTURE
    signature = cursor.pos
    signature_len = <Py_ssize_t>item.arg
    # WIRE-FORMAT 2: the signature's length is a structure check and comes before the
    # header's: a 70-byte (ES256-sized) signature is MALFORMED whatever alg says.
    if signature_len != 64:
        return Reason.COSE_SIGNATURE_LENGTH
    cose.signature = signature
    # WIRE-FORMAT 2: an empty protected bstr is "no protected header" (RFC 9052 3), so
    # no alg (UNSUPPORTED); a non-empty one must hold exactly one map (MALFORMED).
    if cose.protected_len != 0:
        reason = validate_document(cose.protected, cose.protected_len, False)
        if reason != Reason.OK:
            return reason
        if cose.protected[0] >> 5 != MAJOR_MAP:
            return Reason.COSE_PROTECTED
        _find_labels(cose.protected, cose.protected + cose.protected_len, &alg, &crit, &kid)
    # WIRE-FORMAT 2: alg only counts in the protected map, and only EdDSA (-8).
    if alg == NULL:
        return Reason.HEADER_ALG_MISSING
    if alg[0] != 0x27:  # -8 in its one preferred encoding
        return Reason.HEADER_ALG_UNSUPPORTED
    # WIRE-FORMAT 2: crit is never accepted, in either map.
    _find_labels(unprotected, unprotected_end, NULL, &crit, &unprotected_kid)
    if crit:
        return Reason.HEADER_CRIT
    # WIRE-FORMAT 2: kid from the protected map; from the unprotected one only when absent there.
    if kid == NULL:
        kid = unprotected_kid
    if kid == NULL:
        return Reason.HEADER_KID_MISSING
    if kid[0] != 0x48:  # bstr of exactly 8 bytes
        return Reason.HEADER_KID_INVALID
    cose.kid = kid + 1
    return Reason.OK


cdef inline Py_ssize_t _bstr_head(uint8_t* out, Py_ssize_t n) noexcept nogil:
    if n < 24:
        out[0] = 0x40 | <uint8_t>n
        return 1
    if n < 0x100:
        out[0] = 0x58
        out[1] = <uint8_t>n
        return 2
    out[0] = 0x59  # messages are at most 4096 bytes: two bytes always suffice
    out[1] = <uint8_t>(n >> 8)
    out[2] = <uint8_t>(n & 0xFF)
    return 3


cdef int _verify_signature(const Cose* cose, const uint8_t* public_key) noexcept nogil:
    """Ed25519 over the canonical ["Signature1", protected, h'', payload]; 0 when it holds."""
    cdef uint8_t signed[SIG_STRUCTURE_MAX]
    cdef Py_ssize_t n = 12
    memcpy(signed, b"\x84\x6aSignature1", 12)
    n += _bstr_head(signed + n, cose.protected_len)
    memcpy(signed + n, cose.protected, cose.protected_len)
    n += cose.protected_len
    signed[n] = 0x40  # external_aad: h''
    n += 1
    n += _bstr_head(signed + n, cose.payload_len)
    memcpy(signed + n, cose.payload, cose.payload_len)
    n += cose.payload_len
    return ed25519_verify(cose.signature, signed, <size_t>n, public_key)


cdef class _Checked:
    """What the checks up to the signature gave: the reason they stopped at (OK
    when the signature held), the kid (once read), the key's issuers."""
    cdef Reason reason
    cdef object kid
    cdef object issuers


cdef _Checked _check_signed(Reason parsed, Cose* cose, object trust):
    """WIRE-FORMAT 2 after the parse (``parsed``, from _parse_cose): key known (a
    permit issuer's: ``trust.issuer_keys``), not revoked, then the signature (with
    the GIL released)."""
    cdef _Checked checked = _Checked.__new__(_Checked)
    cdef PyObject* entry
    cdef bytes public_key
    cdef const uint8_t* key_bytes
    cdef int rc
    checked.reason = parsed
    if parsed != Reason.OK:
        return checked
    checked.kid = PyBytes_FromStringAndSize(<const char*>cose.kid, 8)
    entry = PyDict_GetItem(<dict>trust.issuer_keys, checked.kid)
    if entry == NULL:
        # A Status List signer's key is trusted, but never for a permit token.
        checked.reason = Reason.KEY_USE if checked.kid in trust.status_keys else Reason.KEY_UNKNOWN
        return checked
    key = <tuple>entry
    public_key = key[0]
    if key[1] == S_REVOKED:
        checked.reason = Reason.KEY_REVOKED
        return checked
    checked.issuers = key[2]
    key_bytes = <const uint8_t*>PyBytes_AS_STRING(public_key)
    with nogil:
        rc = _verify_signature(cose, key_bytes)
        if rc == 0:
            # The first step of the claims check (WIRE-FORMAT 3), while the GIL is
            # released anyway: threads then hold it for less of each verify.
            cose.payload_reason = validate_document(cose.payload, cose.payload_len, False)
    if rc != 0:
        checked.reason = Reason.SIGNATURE_INVALID
    return checked


# --- WIRE-FORMAT 3 and 6: claims --------------------------------------------------------

cdef inline object _int_object(const Head* head):
    """A CBOR int (major 0 or 1) as a Python int."""
    if head.major == MAJOR_UINT:
        return PyLong_FromUnsignedLongLong(head.arg)
    if head.arg <= <uint64_t>0x7FFFFFFFFFFFFFFF:
        return PyLong_FromLongLong(-1 - <int64_t>head.arg)
    return -1 - PyLong_FromUnsignedLongLong(head.arg)


cdef inline object _text(const Head* head, const uint8_t* content):
    return fastpath_text(<const char*>content, <Py_ssize_t>head.arg)


cdef inline bint _digits(const uint8_t* s, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        if not (0x30 <= s[i] <= 0x39):
            return False
    return True


cdef inline int _number(const uint8_t* s, int n) noexcept nogil:
    cdef int i, value = 0
    for i in range(n):
        value = value * 10 + (s[i] - 0x30)
    return value


cdef bint _is_date(const Head* head, const uint8_t* s) noexcept nogil:
    """A real calendar date written YYYY-MM-DD (ASCII digits; years 0001-9999).

    By hand rather than with datetime: the same rules as the Python twin's
    regular expression plus ``datetime.date``.
    """
    cdef int year, month, day, last
    if head.major != MAJOR_TEXT or head.arg != 10:
        return False
    if not (_digits(s, 4) and s[4] == 0x2D and _digits(s + 5, 2) and s[7] == 0x2D
            and _digits(s + 8, 2)):
        return False
    year = _number(s, 4)
    month = _number(s + 5, 2)
    day = _number(s + 8, 2)
    if year < 1 or month < 1 or month > 12 or day < 1:
        return False
    if month == 2:
        last = 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        last = 30
    else:
        last = 31
    return day <= last


cdef inline bint _is_text(const Head* head) noexcept nogil:
    return head.major == MAJOR_TEXT and head.arg > 0


cdef bint _all_of(const Head* head, const uint8_t* s, Py_ssize_t n, bint digits) noexcept nogil:
    """A text of exactly n characters, each A-Z (or 0-9 too when ``digits``)."""
    cdef Py_ssize_t i
    cdef uint8_t c
    if head.major != MAJOR_TEXT or head.arg != <uint64_t>n:
        return False
    for i in range(n):
        c = s[i]
        if not (0x41 <= c <= 0x5A or (digits and 0x30 <= c <= 0x39)):
            return False
    return True


cdef class _Claims:
    """The outcome of the claim checks: a failure (reasons) or the claims, the map
    and the status claim."""
    cdef tuple failure
    cdef dict claims
    cdef dict permit
    cdef object card_public_key
    cdef object status_ref


cdef inline void _value_head(const uint8_t* value, const uint8_t* end, Head* head,
                             const uint8_t** content) noexcept nogil:
    """The head of a validated item and where its content starts."""
    cdef Cursor cursor
    cursor.pos = value
    cursor.end = end
    read_head(&cursor, head)
    content[0] = cursor.pos


cdef bint _int_claim(_Claims out, dict claims, const uint8_t* value, const uint8_t* end, str name,
                     tuple missing, tuple wrong_type) except -1:
    """One integer claim (exp, nbf, iat; ``value`` NULL when absent) copied to
    ``claims`` by name. True when it failed, its reasons in ``out.failure``
    (``missing`` None: the claim is optional)."""
    cdef Head head
    cdef const uint8_t* content
    if value == NULL:
        out.failure = missing
        return missing is not None
    _value_head(value, end, &head, &content)
    if head.major != MAJOR_UINT and head.major != MAJOR_NINT:
        out.failure = wrong_type
        return True
    claims[name] = _int_object(&head)
    return False


cdef _Claims _check_claims(const uint8_t* payload, Py_ssize_t n, Reason validated, Profile profile):
    """WIRE-FORMAT 3 (and 6 for CARD): the claims, then the permit (or card) map,
    in one fixed order (the Python twin's ``check_claims``)."""
    cdef _Claims out = _Claims.__new__(_Claims)
    cdef Reason reason
    cdef Cursor cursor
    cdef Head head, value_head
    cdef const uint8_t* end = payload + n
    cdef const uint8_t* key
    cdef const uint8_t* content
    cdef const uint8_t* iss = NULL
    cdef const uint8_t* exp = NULL
    cdef const uint8_t* nbf = NULL
    cdef const uint8_t* iat = NULL
    cdef const uint8_t* cti = NULL
    cdef const uint8_t* body = NULL
    cdef const uint8_t* status = NULL
    cdef uint64_t i, count
    cdef Py_ssize_t key_size
    cdef dict claims
    # ``validated``: the payload's CBOR validation (by _check_signed).
    if validated != Reason.OK:
        out.failure = <tuple>_REASONS[<int>validated]
        return out
    if payload[0] >> 5 != MAJOR_MAP:
        out.failure = <tuple>_REASONS[<int>Reason.CLAIMS_NOT_MAP]
        return out
    cursor.pos = payload
    cursor.end = end
    read_head(&cursor, &head)
    count = head.arg
    for i in range(count):
        key = cursor.pos
        skip_valid(&cursor)
        key_size = cursor.pos - key
        if key_size == 1:
            if key[0] == 0x01:
                iss = cursor.pos
            elif key[0] == 0x04:
                exp = cursor.pos
            elif key[0] == 0x05:
                nbf = cursor.pos
            elif key[0] == 0x06:
                iat = cursor.pos
            elif key[0] == 0x07:
                cti = cursor.pos
        elif key_size == 5 and memcmp(key, b"\x3a\x00\x01\x11", 4) == 0:
            # -70001 (permit) or -70002 (card)
            if (profile != P_CARD and key[4] == 0x70) or (profile == P_CARD and key[4] == 0x71):
                body = cursor.pos
        elif key_size == 3 and key[0] == 0x19 and key[1] == 0xFF and key[2] == 0xFF:
            status = cursor.pos  # 65535 (WIRE-FORMAT 8)
        skip_valid(&cursor)

    claims = {}
    if iss == NULL:
        out.failure = MISSING_ISS
        return out
    _value_head(iss, end, &value_head, &content)
    if not _is_text(&value_head):
        out.failure = TYPE_ISS
        return out
    claims[S_ISS] = _text(&value_head, content)
    if (_int_claim(out, claims, exp, end, S_EXP, MISSING_EXP, TYPE_EXP)
            or _int_claim(out, claims, nbf, end, S_NBF, None, TYPE_NBF)
            or _int_claim(out, claims, iat, end, S_IAT, MISSING_IAT, TYPE_IAT)):
        return out
    if cti != NULL:
        _value_head(cti, end, &value_head, &content)
        if value_head.major != MAJOR_BYTES or not (8 <= value_head.arg <= 32):
            out.failure = TYPE_CTI
            return out
        claims[S_CTI] = PyBytes_FromStringAndSize(<const char*>content, <Py_ssize_t>value_head.arg)
    elif profile == P_ES1:
        out.failure = MISSING_CTI  # an ES1 code is unique per token
        return out

    if profile == P_CARD:
        out.failure = _check_card_map(out, body, end)
    else:
        out.failure = _check_permit_map(out, body, end, profile)
    if out.failure is None and status != NULL:
        out.failure = _check_status(out, status, end)
    if out.failure is None:
        out.claims = claims
    return out


cdef bint _text_key(const uint8_t* body, const uint8_t* end, const char* key, Py_ssize_t key_size,
                    const uint8_t** value) noexcept nogil:
    """In a validated map, the value of the encoded text key ``key`` (NULL when
    absent); False when one of the map's keys is not a text."""
    cdef Cursor cursor
    cdef Head head
    cdef uint64_t i
    cdef const uint8_t* k
    value[0] = NULL
    cursor.pos = body
    cursor.end = end
    read_head(&cursor, &head)
    for i in range(head.arg):
        k = cursor.pos
        if k[0] >> 5 != MAJOR_TEXT:
            return False
        skip_valid(&cursor)
        if cursor.pos - k == key_size and memcmp(k, key, key_size) == 0:
            value[0] = cursor.pos
        skip_valid(&cursor)
    return True


cdef tuple _check_status(_Claims out, const uint8_t* status, const uint8_t* end):
    """WIRE-FORMAT 8: the status claim, there, is {"status_list": {"idx": uint,
    "uri": tstr}} with text keys (other keys ignored). None, or the failure's reasons."""
    cdef const uint8_t* reference
    cdef const uint8_t* idx
    cdef const uint8_t* uri
    cdef Head idx_head, uri_head
    cdef const uint8_t* content
    if status[0] >> 5 != MAJOR_MAP:
        return TYPE_STATUS
    if not _text_key(status, end, b"\x6bstatus_list", 12, &reference):
        return STATUS_TYPE_KEY
    if reference == NULL:
        return MISSING_STATUS_LIST
    if reference[0] >> 5 != MAJOR_MAP:
        return TYPE_STATUS_LIST
    if not _text_key(reference, end, b"\x63idx", 4, &idx):
        return STATUS_TYPE_KEY
    _text_key(reference, end, b"\x63uri", 4, &uri)
    if idx == NULL:
        return MISSING_IDX
    _value_head(idx, end, &idx_head, &content)
    if idx_head.major != MAJOR_UINT:
        return TYPE_IDX
    if uri == NULL:
        return MISSING_URI
    _value_head(uri, end, &uri_head, &content)
    if not _is_text(&uri_head):
        return TYPE_URI
    out.status_ref = _TUPLE_NEW(StatusRef, (_text(&uri_head, content), PyLong_FromUnsignedLongLong(idx_head.arg)))
    return None


cdef inline int _permit_key(const uint8_t* key, Py_ssize_t size) noexcept nogil:
    """Which of the permit map's keys the encoded text key is, or -1."""
    cdef uint8_t a = key[1] if size > 1 else 0
    cdef uint8_t b = key[2] if size > 2 else 0
    cdef uint8_t c = key[3] if size > 3 else 0
    if size == 2:
        return K_N if a == b'n' else K_V if a == b'v' else -1
    if size == 3:
        if b == b'n':
            return K_PN if a == b'p' else K_CN if a == b'c' else -1
        if a == b'v':
            return K_VF if b == b'f' else K_VT if b == b't' else -1
        return -1
    if size == 4:
        if a == b'n' and b == b'a' and c == b't':
            return K_NAT
        if a == b'd' and b == b'o' and c == b'b':
            return K_DOB
        if a == b'c' and b == b'a' and c == b't':
            return K_CAT
        if a == b'e' and b == b'm' and c == b'p':
            return K_EMP
        if a == b's' and b == b's' and c == b'n':
            return K_SSN
    return -1


cdef tuple _text_keyed_map(const uint8_t* body, const uint8_t* end, bint card,
                           const uint8_t** keys, int key_count):
    """Check the -70001/-70002 claim is a map with text keys only; find the known
    keys' values (in ``keys``). None, or the failure's reasons."""
    cdef Cursor cursor
    cdef Head head
    cdef uint64_t i, count
    cdef const uint8_t* key
    cdef Py_ssize_t size
    cdef int k
    if body == NULL:
        return MISSING_CARD if card else MISSING_PERMIT
    if body[0] >> 5 != MAJOR_MAP:
        return TYPE_CARD if card else TYPE_PERMIT
    cursor.pos = body
    cursor.end = end
    read_head(&cursor, &head)
    count = head.arg
    for i in range(count):
        key = cursor.pos
        if key[0] >> 5 != MAJOR_TEXT:
            return CARD_TYPE_KEY if card else PERMIT_TYPE_KEY  # text keys only
        skip_valid(&cursor)
        size = cursor.pos - key
        if card:
            if size == 3 and key[0] == 0x62 and key[1] == 0x63 and key[2] == 0x6E:    # "cn"
                keys[<int>C_CN] = cursor.pos
            elif size == 4 and memcmp(key, b"\x63ssn", 4) == 0:
                keys[<int>C_SSN] = cursor.pos
            elif size == 3 and key[0] == 0x62 and key[1] == 0x70 and key[2] == 0x6E:  # "pn"
                keys[<int>C_PN] = cursor.pos
            elif size == 4 and memcmp(key, b"\x63cpk", 4) == 0:
                keys[<int>C_CPK] = cursor.pos
        elif size <= 4:
            k = _permit_key(key, size)
            if k >= 0:
                keys[k] = cursor.pos
        skip_valid(&cursor)
    return None


cdef tuple _check_permit_map(_Claims out, const uint8_t* body, const uint8_t* end, Profile profile):
    cdef const uint8_t* values[11]
    cdef Head heads[11]
    cdef const uint8_t* contents[11]
    cdef int k
    cdef bint ok
    cdef tuple failure
    cdef dict permit
    cdef const uint8_t* content
    for k in range(PERMIT_KEY_COUNT):
        values[k] = NULL
    failure = _text_keyed_map(body, end, False, values, PERMIT_KEY_COUNT)
    if failure is not None:
        return failure
    for k in range(PERMIT_KEY_COUNT):
        if values[k] == NULL:
            if (k == K_SSN or k == K_CN) and profile != P_ES1:
                continue  # optional in WP1, required in ES1
            return <tuple>_PERMIT_MISSING[k]
        _value_head(values[k], end, &heads[k], &contents[k])
        content = contents[k]
        if k == K_PN or k == K_N or k == K_SSN or k == K_CN:
            ok = _is_text(&heads[k])
        elif k == K_NAT:
            ok = _all_of(&heads[k], content, 3, False)     # ISO 3166-1 alpha-3
        elif k == K_DOB or k == K_VF:
            ok = _is_date(&heads[k], content)
        elif k == K_VT:
            # valid to on or after valid from (same format: bytes order is date order)
            ok = _is_date(&heads[k], content) and memcmp(content, contents[K_VF], 10) >= 0
        elif k == K_CAT:
            ok = (heads[k].major == MAJOR_TEXT and heads[k].arg == 1
                  and 0x41 <= content[0] <= 0x43)           # A, B or C
        elif k == K_EMP:
            ok = _all_of(&heads[k], content, 18, True)     # unified social credit code
        else:  # K_V
            ok = heads[k].major == MAJOR_UINT
        if not ok:
            return <tuple>_PERMIT_TYPE[k]
    # Unknown keys are ignored (WIRE-FORMAT 3): the verdict carries the known ones only.
    permit = _PyDict_NewPresized(PERMIT_KEY_COUNT)
    for k in range(PERMIT_KEY_COUNT):
        if values[k] != NULL:
            if k == K_V:
                PyDict_SetItem(permit, PERMIT_KEYS[k], PyLong_FromUnsignedLongLong(heads[k].arg))
            else:
                PyDict_SetItem(permit, PERMIT_KEYS[k], _text(&heads[k], contents[k]))
    out.permit = permit
    return None


cdef tuple _check_card_map(_Claims out, const uint8_t* body, const uint8_t* end):
    cdef const uint8_t* values[4]
    cdef Head heads[4]
    cdef const uint8_t* contents[4]
    cdef int k
    cdef bint ok
    cdef tuple failure
    for k in range(CARD_KEY_COUNT):
        values[k] = NULL
    failure = _text_keyed_map(body, end, True, values, CARD_KEY_COUNT)
    if failure is not None:
        return failure
    for k in range(CARD_KEY_COUNT):
        if values[k] == NULL:
            return <tuple>_CARD_MISSING[k]
        _value_head(values[k], end, &heads[k], &contents[k])
        if k == C_CPK:
            ok = heads[k].major == MAJOR_BYTES and heads[k].arg == 32
        else:
            ok = _is_text(&heads[k])
        if not ok:
            return <tuple>_CARD_TYPE[k]
    out.permit = {
        "cn": _text(&heads[<int>C_CN], contents[<int>C_CN]),
        "ssn": _text(&heads[<int>C_SSN], contents[<int>C_SSN]),
        "pn": _text(&heads[<int>C_PN], contents[<int>C_PN]),
    }
    out.card_public_key = PyBytes_FromStringAndSize(<const char*>contents[<int>C_CPK], 32)
    return None


# --- WIRE-FORMAT 3: times -------------------------------------------------------------

cdef Reason _check_times_c(int128 exp, int128 iat, bint has_nbf, int128 nbf,
                           Profile profile, int128 now) noexcept nogil:
    """Lifetime, then not yet valid, then expired (leeway 60 s)."""
    if exp <= iat or (profile == P_ES1 and exp - iat > ES1_MAX_LIFETIME):
        return Reason.TIME_LIFETIME
    if (has_nbf and now + LEEWAY < nbf) or now + LEEWAY < iat:
        return Reason.TIME_NOT_YET_VALID
    if now - LEEWAY >= exp:
        return Reason.TIME_EXPIRED
    return Reason.OK


cdef Reason _check_times_object(dict claims, Profile profile, object now) except *:
    """The same checks with Python arithmetic, for a ``now`` that is not a 64-bit int."""
    exp = claims[S_EXP]
    iat = claims[S_IAT]
    if exp <= iat or (profile == P_ES1 and exp - iat > ES1_MAX_LIFETIME):
        return Reason.TIME_LIFETIME
    nbf = claims.get(S_NBF)
    if (nbf is not None and now + LEEWAY < nbf) or now + LEEWAY < iat:
        return Reason.TIME_NOT_YET_VALID
    if now - LEEWAY >= exp:
        return Reason.TIME_EXPIRED
    return Reason.OK


cdef Reason _check_times(dict claims, Profile profile, object now) except *:
    """The time checks of claims that passed the claim checks, in C when ``now`` is
    an exact int within 64 bits (the usual case), else in Python arithmetic."""
    cdef int overflow = 0
    cdef long long now_c
    cdef int128 nbf = 0
    if type(now) is not int:
        return _check_times_object(claims, profile, now)
    now_c = PyLong_AsLongLongAndOverflow(now, &overflow)
    if overflow:
        return _check_times_object(claims, profile, now)
    # The claims' ints are CBOR ints: within [-2**64, 2**64 - 1], exact in 128 bits.
    nbf_object = claims.get(S_NBF)
    if nbf_object is not None:
        nbf = _to_int128(nbf_object)
    return _check_times_c(_to_int128(claims[S_EXP]), _to_int128(claims[S_IAT]), nbf_object is not None, nbf,
                          profile, <int128>now_c)


cdef int128 _to_int128(object value) except? -1:
    """A Python int of at most 65 bits (a CBOR int) as a C 128-bit integer."""
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
    cdef uint64_t magnitude
    if not overflow:
        return <int128>v
    if value > 0:
        return <int128>(<uint64_t>(value & 0xFFFFFFFFFFFFFFFF))
    magnitude = <uint64_t>((-1 - value) & 0xFFFFFFFFFFFFFFFF)
    return -1 - <int128>magnitude


# --- verdicts ---------------------------------------------------------------------------

# Verdicts are made by allocating one (the class's tp_new, object's) and calling
# ``Verdict.__init__`` with its keywords as a vectorcall (their names in a tuple,
# no dict): calling the class with keywords would build a dict of them first,
# ~170 ns more a verdict (a third of a verdict-cache hit).
cdef type _VERDICT = Verdict
cdef object _VERDICT_INIT = Verdict.__init__
cdef tuple _NO_ARGS = ()


cdef inline object _blank_verdict():
    return (<PyTypeObject*>_VERDICT).tp_new(_VERDICT, <PyObject*>_NO_ARGS, NULL)


cdef object _verdict(Reason reason, object profile, object kid, _Claims found, bint cached):
    """The one place a verdict of a check is built: VALID for OK, else the reason's
    code and reason (for CLAIMS, MALFORMED and the claim reasons in ``found``);
    with the kid (None before the header gave one) and, unless the claims
    failed, what the claim checks found (``found``, None before them)."""
    verdict = _blank_verdict()
    if reason == Reason.CLAIMS:
        _VERDICT_INIT(verdict, _RESULT[<int>reason], found.failure, profile, kid=kid, cached=cached)
    elif found is None:
        _VERDICT_INIT(verdict, _RESULT[<int>reason], _REASONS[<int>reason], profile, kid=kid, cached=cached)
    else:
        _VERDICT_INIT(verdict, _RESULT[<int>reason], _REASONS[<int>reason], profile, claims=found.claims,
                      permit=found.permit, card_public_key=found.card_public_key, kid=kid,
                      status_ref=found.status_ref, cached=cached)
    return verdict


cdef inline object _timed(_Claims found, Profile profile, object now, object kid, bint cached):
    """The last check, the times (never cached: they depend on now), and the verdict."""
    return _verdict(_check_times(found.claims, profile, now), _PROFILE_NAMES[<int>profile], kid, found, cached)


# --- the verdict cache (DESIGN "Hot path cost"); entries shared with the Python twin --

cdef inline dict _copy_dict(object value):
    return None if value is None else dict(value)


cdef object _copy(object verdict, bint cached):
    """A verdict whose dicts are the caller's own: the cache keeps its copy intact."""
    copy = _blank_verdict()
    _VERDICT_INIT(copy, verdict.result, verdict.reasons, verdict.profile, claims=_copy_dict(verdict.claims),
                  permit=_copy_dict(verdict.permit), card_public_key=verdict.card_public_key,
                  kid=verdict.kid, status_ref=verdict.status_ref, cached=cached)
    return copy


cdef object _from_cache(object entry, Profile profile, object now):
    cdef _Claims found
    failure = entry.failure
    if failure is not None:
        return _copy(failure, True)
    found = _Claims.__new__(_Claims)
    found.claims = dict(entry.claims)  # copies: callers must not reach the cache
    found.permit = dict(entry.permit)
    found.status_ref = entry.status_ref
    return _timed(found, profile, now, entry.kid, True)


# --- the checks from the COSE message on, for QR codes and card certificates alike ------

cdef object _verify_message(Reason parsed, Cose* cose, object trust, Profile profile, object now,
                            dict cache, object text):
    """WIRE-FORMAT 2-4 (and 6) after the parse (``parsed``, from _parse_cose): key,
    signature, claims, issuer, then the times. With ``cache`` (a WP1 code's), what
    the checks before the times gave is kept there under ``text``."""
    cdef _Checked checked
    cdef _Claims found
    cdef Reason reason = Reason.OK
    profile_name = _PROFILE_NAMES[<int>profile]
    checked = _check_signed(parsed, cose, trust)
    if checked.reason != Reason.OK:
        return _verdict(checked.reason, profile_name, checked.kid, None, False)
    found = _check_claims(cose.payload, cose.payload_len, cose.payload_reason, profile)
    if found.failure is not None:
        reason = Reason.CLAIMS
    elif PySet_Contains(checked.issuers, found.claims[S_ISS]) != 1:
        reason = Reason.KEY_ISSUER  # WIRE-FORMAT 4: the key may sign only for its issuers
    if reason != Reason.OK:
        verdict = _verdict(reason, profile_name, checked.kid, found, False)
        if cache is not None:  # failed after a good signature: worth keeping
            cache_put(cache, trust.cache_limit, text, CacheEntry(_copy(verdict, False), None, None, None, None))
        return verdict
    if cache is not None:
        cache_put(cache, trust.cache_limit, text,
                  CacheEntry(None, dict(found.claims), dict(found.permit), checked.kid, found.status_ref))
    return _timed(found, profile, now, checked.kid, False)


# --- public API ---------------------------------------------------------------------

cdef inline void _check_trust(object trust) except *:
    if not isinstance(trust, TrustList):
        raise TypeError(f"trust must be a fastpath.TrustList, not {type(trust).__name__}")


def verify_qr(text, trust, now=None, *, bint cache=True):
    """Verify a QR text (WIRE-FORMAT 1-4; the status checks are the service's)."""
    cdef Profile profile
    cdef int kind
    cdef const void* data
    cdef Py_ssize_t length
    cdef Py_UCS4 c0, c1, c2, c3
    cdef dict verdict_cache = None
    cdef uint8_t message[INFLATE_BUFFER]
    cdef Py_ssize_t message_len = 0
    cdef Reason reason, parsed = Reason.OK
    cdef Cose cose
    cdef PyObject* hit
    _check_trust(trust)
    if now is None:
        now = int(_time.time())
    if type(text) is not str:
        return _verdict(Reason.INPUT_TYPE, None, None, None, False)
    PyUnicode_READY(text)
    length = PyUnicode_GET_LENGTH(text)
    kind = PyUnicode_KIND(text)
    data = PyUnicode_DATA(text)
    # WIRE-FORMAT 1: exactly "WP1:" or "ES1:", case-sensitive.
    if length < 4:
        return _verdict(Reason.PREFIX_UNKNOWN, None, None, None, False)
    c0 = PyUnicode_READ(kind, data, 0)
    c1 = PyUnicode_READ(kind, data, 1)
    c2 = PyUnicode_READ(kind, data, 2)
    c3 = PyUnicode_READ(kind, data, 3)
    if c1 == u'P' and c0 == u'W' and c2 == u'1' and c3 == u':':
        profile = P_WP1
    elif c1 == u'S' and c0 == u'E' and c2 == u'1' and c3 == u':':
        profile = P_ES1
    else:
        return _verdict(Reason.PREFIX_UNKNOWN, None, None, None, False)
    # ES1 codes are dynamic (one minute) and never repeat: only WP1 is worth caching.
    if cache and profile == P_WP1:
        verdict_cache = trust.verdict_cache
        hit = PyDict_GetItem(verdict_cache, text)
        if hit != NULL:
            return _from_cache(<object>hit, profile, now)

    # The byte work up to the kid, in one stretch without the GIL.
    with nogil:
        reason = _decode_qr(kind, <const char*>data + 4 * kind, length - 4, message, &message_len)
        if reason == Reason.OK:
            parsed = _parse_cose(message, message_len, &cose)
    if reason != Reason.OK:
        return _verdict(reason, _PROFILE_NAMES[<int>profile], None, None, False)
    return _verify_message(parsed, &cose, trust, profile, now, verdict_cache, text)


cdef object _certificate_verdict(object certificate, object trust, object now):
    cdef Cose cose
    cdef Reason reason
    cdef Py_ssize_t n
    cdef const uint8_t* data
    if type(certificate) is not bytes:
        return _verdict(Reason.INPUT_TYPE, _PROFILE_NAMES[<int>P_CARD], None, None, False)
    n = PyBytes_GET_SIZE(certificate)
    if n > MAX_CARD_CERTIFICATE:
        return _verdict(Reason.CARD_TOO_LONG, _PROFILE_NAMES[<int>P_CARD], None, None, False)
    data = <const uint8_t*>PyBytes_AS_STRING(certificate)
    with nogil:
        reason = _parse_cose(data, n, &cose)
    return _verify_message(reason, &cose, trust, P_CARD, now, None, None)


def verify_card_certificate(certificate, trust, now=None):
    """The certificate part of WIRE-FORMAT 6: COSE as section 2, the card claims,
    issuer and times. Never cached."""
    _check_trust(trust)
    return _certificate_verdict(certificate, trust, int(_time.time()) if now is None else now)


def check_card_signature(card_public_key, challenge, signature):
    """None when the card signed ``b"SSC-AUTH-1" + challenge``, else the reason."""
    cdef uint8_t message[42]
    cdef const uint8_t* key
    cdef const uint8_t* sig
    cdef int rc
    if type(challenge) is not bytes or PyBytes_GET_SIZE(challenge) != 32:
        return codes.R_CARD_CHALLENGE
    if type(signature) is not bytes or PyBytes_GET_SIZE(signature) != 64:
        return codes.R_CARD_SIGNATURE_LENGTH
    if type(card_public_key) is not bytes or PyBytes_GET_SIZE(card_public_key) != 32:
        return codes.R_CARD_SIGNATURE
    memcpy(message, <const char*>CARD_AUTH_DOMAIN, 10)
    memcpy(message + 10, PyBytes_AS_STRING(challenge), 32)
    key = <const uint8_t*>PyBytes_AS_STRING(card_public_key)
    sig = <const uint8_t*>PyBytes_AS_STRING(signature)
    with nogil:
        rc = ed25519_verify(sig, message, 42, key)
    if rc != 0:
        return codes.R_CARD_SIGNATURE
    return None


cdef dict _CARD_REASON_RESULTS = {
    codes.R_CARD_CHALLENGE: codes.CHALLENGE_INVALID,
    codes.R_CARD_SIGNATURE_LENGTH: codes.MALFORMED,
    codes.R_CARD_SIGNATURE: codes.BAD_SIGNATURE,
}


def verify_card(certificate, challenge, signature, trust, now=None):
    """WIRE-FORMAT 6 without the challenge store and the status: the certificate,
    then the card's signature over the challenge."""
    verdict = verify_card_certificate(certificate, trust, now)
    if not verdict.ok:
        return verdict
    reason = check_card_signature(verdict.card_public_key, challenge, signature)
    if reason is not None:
        verdict.result = _CARD_REASON_RESULTS[reason]
        verdict.reasons = (reason,)
    return verdict
