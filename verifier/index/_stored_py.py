"""The compact stored layout of a permit record: the readable twin.

Why. The index keeps one value a permit (``{pv}:g<G>:p:<pn>``); as msgspec's
``array_like`` ``PermitRecord`` (the *legacy* layout) it averages 154 bytes, which
Redis's jemalloc puts in its 160-byte class. The *compact* layout leaves out the
permit number (it is the key's last part: the reader knows it and passes it in),
writes canonical dates as day numbers and the categories and statuses as small
integers: ~98 bytes, the 112-byte class.

The compact layout: a msgpack array of exactly 13 elements, in this order::

    0 v       int >= 0 (first: a Lua script reads it at a fixed offset, and it tells
              the layouts apart: a legacy value's first element is the pn, a str)
    1 n       str
    2 nat     str
    3 dob     int, days since 1970-01-01 (proleptic Gregorian, years 1-9999), when the
              record's string is a canonical YYYY-MM-DD that formats back to itself;
              else the str as it is
    4 cat     int: 0 "A", 1 "B", 2 "C"
    5 emp     str
    6 vf      date, as dob
    7 vt      date, as dob
    8 status  int: 0 "active", 1 "cancelled"
    9 ssn     str or nil
    10 cards  array of [cn str, status int: 0 "active", 1 "lost", 2 "replaced"]
    11 si     int >= 0 or nil
    12 ci     int >= 0 or nil

Written with msgpack's smallest forms (msgspec's encoder); read in any form msgpack
allows for the type, as msgspec reads. ``decode_stored`` reads both layouts (a
legacy value through msgspec's ``PermitRecord`` decoder, as the index did before), so
that workers read either during an upgrade. This twin is the reference: the compiled
``_stored_c.pyx`` must give the same bytes and the same records, and refuse what
this one refuses.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from verifier.index._stored_errors import StoredRecordError
import zlib
from collections.abc import Callable

from verifier.index.records import Card, PermitRecord, check_identifiers

__all__ = ["StoredRecordError", "decode_stored", "encode_stored", "is_compact", "stored_version"]

FIELDS = 13
"""Elements of a compact value."""

CATEGORIES = ("A", "B", "C")
STATUSES = ("active", "cancelled")
CARD_STATUSES = ("active", "lost", "replaced")

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
MIN_DAY = dt.date.min.toordinal() - _EPOCH_ORDINAL  # 0001-01-01: -719162
MAX_DAY = dt.date.max.toordinal() - _EPOCH_ORDINAL  # 9999-12-31: 2932896

_Day = Annotated[int, msgspec.Meta(ge=MIN_DAY, le=MAX_DAY)]
_Unsigned = Annotated[int, msgspec.Meta(ge=0)]


class _CompactCard(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    cn: str
    status: Annotated[int, msgspec.Meta(ge=0, le=len(CARD_STATUSES) - 1)]


class _Compact(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    # No defaults: all 13 are required; forbid_unknown_fields: a 14th is an error.
    v: _Unsigned
    n: str
    nat: str
    dob: _Day | str
    cat: Annotated[int, msgspec.Meta(ge=0, le=len(CATEGORIES) - 1)]
    emp: str
    vf: _Day | str
    vt: _Day | str
    status: Annotated[int, msgspec.Meta(ge=0, le=len(STATUSES) - 1)]
    ssn: str | None
    cards: tuple[_CompactCard, ...]
    si: _Unsigned | None
    ci: _Unsigned | None


_compact_decoder = msgspec.msgpack.Decoder(_Compact)
_legacy_decoder = msgspec.msgpack.Decoder(PermitRecord)
_encode = msgspec.msgpack.Encoder().encode
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)


# --- dates ---------------------------------------------------------------------------


def day_of(text: str) -> int | None:
    """The day number of a canonical date (``YYYY-MM-DD``, a real date of years 1-9999,
    that formats back to exactly ``text``), else None: the string is stored as it is."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    digits = text[:4] + text[5:7] + text[8:]
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        day = dt.date(int(text[:4]), int(text[5:7]), int(text[8:]))
    except ValueError:  # year 0, month 13, February 30, ...
        return None
    return day.toordinal() - _EPOCH_ORDINAL


def date_of(day: int) -> str:
    """The canonical ``YYYY-MM-DD`` of a day number (MIN_DAY .. MAX_DAY)."""
    return dt.date.fromordinal(day + _EPOCH_ORDINAL).isoformat()


def _stored_date(text: object) -> int | str:
    if not isinstance(text, str):
        raise StoredRecordError("permit record: a date is a str")
    day = day_of(text)
    return text if day is None else day


def _read_date(value: int | str) -> str:
    return value if isinstance(value, str) else date_of(value)


# --- the layouts -----------------------------------------------------------------------


def _first_element_type(raw: bytes) -> int | None:
    """The type byte of the value's first element, if the value starts as an array."""
    if not raw:
        return None
    head = raw[0]
    if 0x90 <= head <= 0x9F:
        at = 1
    elif head == 0xDC:
        at = 3
    elif head == 0xDD:
        at = 5
    else:
        return None
    return raw[at] if at < len(raw) else None


def is_compact(raw: bytes) -> bool:
    """True when ``raw`` is (or claims to be: it is not checked) a compact value: an array
    whose first element is an integer (a legacy value's is its permit number, a str)."""
    if not isinstance(raw, bytes):
        raise TypeError("a stored record is bytes")
    kind = _first_element_type(raw)
    return kind is not None and (kind <= 0x7F or 0xCC <= kind <= 0xD3 or kind >= 0xE0)


def _check_unsigned(value: object, what: str) -> None:
    if type(value) is bool or not isinstance(value, int) or not 0 <= value < 2**64:
        raise StoredRecordError(f"permit record: {what} is an int in 0 .. 2**64-1")


def _check_str(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise StoredRecordError(f"permit record: {what} is a str")


def encode_stored(record: PermitRecord) -> bytes:
    """The compact stored value of ``record`` (without its permit number). Raises
    :class:`StoredRecordError` for a record the layout cannot hold (PermitRecord's
    constructor checks no types: a negative ``v``, a category outside A/B/C...)."""
    if not issubclass(type(record), PermitRecord):  # by its type, as the compiled twin (it reads slots)
        raise TypeError("encode_stored takes a PermitRecord")
    _check_unsigned(record.v, "v")
    for name in ("n", "nat", "emp"):
        _check_str(getattr(record, name), name)
    if record.cat not in CATEGORIES or not isinstance(record.cat, str):
        raise StoredRecordError("permit record: unknown category")
    if record.status not in STATUSES or not isinstance(record.status, str):
        raise StoredRecordError("permit record: unknown status")
    if record.ssn is not None:
        _check_str(record.ssn, "ssn")
    if not isinstance(record.cards, (tuple, list)):
        raise StoredRecordError("permit record: cards is a tuple of Card")
    cards = []
    for card in record.cards:
        if not issubclass(type(card), Card):
            raise StoredRecordError("permit record: cards is a tuple of Card")
        _check_str(card.cn, "a card number")
        if card.status not in CARD_STATUSES or not isinstance(card.status, str):
            raise StoredRecordError("permit record: unknown card status")
        cards.append((card.cn, CARD_STATUSES.index(card.status)))
    for name in ("si", "ci"):
        if getattr(record, name) is not None:
            _check_unsigned(getattr(record, name), name)
    value = (
        record.v, record.n, record.nat, _stored_date(record.dob), CATEGORIES.index(record.cat), record.emp,
        _stored_date(record.vf), _stored_date(record.vt), STATUSES.index(record.status), record.ssn,
        cards, record.si, record.ci,
    )
    try:
        return _encode(value)
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise StoredRecordError(f"permit record: a string is not UTF-8: {exc}") from None


def decode_stored(pn: str, raw: bytes) -> PermitRecord:
    """The record of a stored value of either layout; ``pn`` (the key's last part) is the
    permit number of a compact value (a legacy value's own is used). Raises
    :class:`StoredRecordError` for anything either layout refuses."""
    if not isinstance(raw, bytes):
        raise TypeError("a stored record is bytes")
    if not is_compact(raw):
        try:
            return _legacy_decoder.decode(raw)
        except _DECODE_ERRORS as exc:
            raise StoredRecordError(f"undecodable permit record: {exc}") from None
    if not isinstance(pn, str):
        raise TypeError("a permit number is a str")
    try:
        c = _compact_decoder.decode(raw)
    except _DECODE_ERRORS as exc:
        raise StoredRecordError(f"undecodable permit record: {exc}") from None
    return PermitRecord(
        pn, c.n, c.nat, _read_date(c.dob), CATEGORIES[c.cat], c.emp, _read_date(c.vf), _read_date(c.vt),
        c.v, STATUSES[c.status], c.ssn, tuple(Card(card.cn, CARD_STATUSES[card.status]) for card in c.cards),
        c.si, c.ci,
    )


def stored_version(raw: bytes) -> int:
    """The ``v`` of a stored value of either layout (the whole value is checked, as
    ``decode_stored`` checks it)."""
    return decode_stored("", raw).v


def prepare_load(records: list[PermitRecord], prefix: bytes, mask: int, ssn_buckets: dict[int, bytearray],
                 cn_buckets: dict[int, bytearray],
                 encode: Callable[[PermitRecord], bytes] | None = None) -> tuple[list[bytes], list[bytes]]:
    """A snapshot batch's keys and values, its secondary look-ups gathered into buckets.

    For each record, in order: :func:`~verifier.index.records.check_identifiers` (its
    ValueError stops the batch), the key ``prefix + pn`` and the value ``encode(record)``
    (the compact :func:`encode_stored` when ``encode`` is None), and an entry
    ``id NUL pn NUL`` appended to bucket ``crc32(id) & mask`` of ``ssn_buckets`` for the
    ssn and of ``cn_buckets`` for each card number (a bucket made when first needed).
    What the snapshot load (``SnapshotLoad.prepare``) does a million times; the
    compiled twin must give the same lists and the same buckets, and raise the same.
    """
    if encode is None:
        encode = encode_stored
    crc32 = zlib.crc32
    keys: list[bytes] = []
    values: list[bytes] = []
    for record in records:
        if not issubclass(type(record), PermitRecord):
            raise TypeError("prepare_load takes PermitRecords")
        check_identifiers(record)
        pn = record.pn.encode()
        keys.append(prefix + pn)
        values.append(encode(record))
        if record.ssn:
            _gather(ssn_buckets, crc32, mask, record.ssn.encode(), pn)
        for card in record.cards:
            _gather(cn_buckets, crc32, mask, card.cn.encode(), pn)
    return keys, values


def _gather(buckets: dict[int, bytearray], crc32: Callable[[bytes], int], mask: int, ident: bytes,
            pn: bytes) -> None:
    bucket = crc32(ident) & mask
    buf = buckets.get(bucket)
    if buf is None:
        buf = buckets[bucket] = bytearray()
    buf += ident + b"\0" + pn + b"\0"


def pack_lookup_bucket(key: bytes, entries: bytes | bytearray, hashed: bool) -> bytes | None:
    """One bucket of a secondary look-up as a RESP ``HSET key field pn ...`` command.

    ``entries`` is what :func:`prepare_load` gathered for the bucket (``id NUL pn NUL``
    ...); each field is the id, or with ``hashed`` the decimal crc32 of it (the
    look-up's hashed field, ``keys.lookup_field``). None when two entries share a field
    (an id on several permits, or a crc32 collision): the caller joins their permit
    numbers (a rare case, left to Python). The compiled twin gives the same bytes.
    """
    parts = bytes(entries).split(b"\0")
    if len(parts) < 3 or len(parts) % 2 != 1 or parts[-1] != b"":
        raise ValueError("look-up entries are id NUL pn NUL pairs")
    idents, pns = parts[0:-1:2], parts[1::2]
    if hashed:
        idents = [b"%d" % zlib.crc32(ident) for ident in idents]
    if len(set(idents)) != len(idents):
        return None
    out = [b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (2 + 2 * len(idents), len(key), key)]
    for ident, pn in zip(idents, pns):
        out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ident), ident, len(pn), pn))
    return b"".join(out)
