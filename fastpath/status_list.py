"""Status List Tokens (WIRE-FORMAT 8): verify one against the trust list, read its entries.

A Status List Token is the CWT form of the IETF Token Status List
(draft-ietf-oauth-status-list): a COSE_Sign1 exactly as WIRE-FORMAT 2 (Ed25519,
the same strict CBOR), signed by a trust-list key whose ``use`` is "status",
whose protected header has ``16`` (typ) = ``application/statuslist+cwt``, and
whose claims are::

    2 sub (tstr, the list's URI)    6 iat (int)    4 exp (int)    65534 ttl (uint > 0)
    65533 status_list: {"bits": 1 | 2, "lst": bstr (ZLIB, RFC 1950)}

Entry ``i`` of the inflated ``lst`` is the ``bits``-wide value at bit
``(i * bits) % 8`` of byte ``(i * bits) // 8``, least significant bit first.

The checks run in this order, and the first that fails raises
:class:`~fastpath.StatusListError` with its reason: size, COSE structure,
header (alg, crit, typ, kid), key known and for Status Lists, key not revoked,
signature, claims, times, then the inflate. Stricter readings of the draft,
chosen here: ``exp`` and ``ttl`` are required (the draft recommends them;
WIRE-FORMAT 8 lists them), ``bits`` is 1 or 2 (the draft also allows 4 and 8),
the list is past its time at ``exp`` with no leeway (a list's ``exp`` is the
service's own promise of freshness), while ``iat`` has WIRE-FORMAT 3's 60 s of
clock skew (a list fetched a moment after it was signed, by a scanner whose
clock is a little behind, is not "from the future"). Unknown claims and unknown
keys of the ``status_list`` map (the draft's ``aggregation_uri``) are ignored.

Pure Python, on the Python twin's parsers: a list is verified once when it is
fetched or loaded, not once per scan; reading an entry is a byte index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from . import codes
from ._trust import USE_STATUS, TrustList
from ._verdict import StatusRef
from ._verify_py import LEEWAY, _check_trust, _is_int, _is_text, _Reject, cbor_decode, check_cose, inflate_bounded
from .errors import StatusListError

__all__ = ["MAX_LIST_BYTES", "MAX_TOKEN_BYTES", "STATUS_LIST_TYP", "StatusList", "verify_status_list"]

STATUS_LIST_TYP = "application/statuslist+cwt"

MAX_LIST_BYTES = 1 << 24
"""The inflated ``lst``, at most: 16 MiB, so 2**26 (67 million) entries of 2 bits,
or 2**27 of 1 bit. About 1 million foreigners hold a work permit in China and
indexes are never reused, so a list grows by every permit (card) ever issued:
the bound is over 60 times today's holders, decades of issuing, while a 16 MiB
buffer is still affordable on a scanner (a real list of 1 million permits
inflates to 250 KB). A list that would inflate past it is refused
(``zlib.too_large``), stopped at the bound, never inflated whole."""

MAX_TOKEN_BYTES = MAX_LIST_BYTES + (1 << 16)
"""The token, at most: a list at the bound, stored uncompressed (deflate's stored
blocks add 5 bytes a 64 KiB), plus the COSE and CWT around it. Checked first,
before any parsing (``status_list.too_long``)."""

BITS = (1, 2)  # WIRE-FORMAT 8: cards 1 bit, permits 2

# CWT claim keys (RFC 8392; the draft's 65534 ttl and 65533 status_list).
SUB, EXP, IAT, TTL, STATUS_LIST = 2, 4, 6, 65534, 65533


def _check_times(iat: int, exp: int, now: int) -> None:
    """A list's lifetime, then not yet valid (iat, leeway 60 s), then expired (exp, no leeway)."""
    if exp <= iat:
        raise StatusListError(codes.R_TIME_LIFETIME, f"the list expires ({exp}) before it was issued ({iat})")
    if now + LEEWAY < iat:
        raise StatusListError(codes.R_TIME_NOT_YET_VALID, f"the list was issued at {iat}, after now ({now})")
    if now >= exp:
        raise StatusListError(codes.R_TIME_EXPIRED, f"the list expired at {exp} (now {now})")


@dataclass(frozen=True, slots=True, repr=False)
class StatusList:
    """A verified Status List: made by :func:`verify_status_list`, read with :meth:`get`.

    - ``sub``: the list's URI (a token's status claim must name it).
    - ``bits``: bits per entry (1 or 2).
    - ``lst``: the inflated bit array.
    - ``iat``, ``exp``, ``ttl``: issued at, expires at (epoch seconds), and how
      long a copy may be kept before fetching a new one (seconds).
    - ``kid``: the 8-byte key id of the key that signed it.
    """

    sub: str
    bits: int
    lst: bytes
    iat: int
    exp: int
    ttl: int
    kid: bytes

    def __len__(self) -> int:
        """The number of entries the list holds (the padding bits of its last byte included)."""
        return len(self.lst) * 8 // self.bits

    def get(self, idx: int) -> int:
        """Entry ``idx`` (an int below ``len(self)``; ``IndexError`` otherwise): the
        ``bits`` at bit ``(idx * bits) % 8`` of byte ``(idx * bits) // 8``, LSB first."""
        if type(idx) is not int or not 0 <= idx < len(self):
            raise IndexError(f"entry {idx!r} is not in this list of {len(self)} entries")
        position = idx * self.bits
        return (self.lst[position >> 3] >> (position & 7)) & ((1 << self.bits) - 1)

    def status_of(self, ref: StatusRef) -> int:
        """The entry a token's status claim points to: its ``uri`` must be this list's
        ``sub`` (``status_list.uri``) and its ``idx`` within it (``status_list.index``)."""
        if ref.uri != self.sub:
            raise StatusListError(codes.R_STATUS_LIST_URI, f"the token's status is in another list ({ref.uri!r})")
        if type(ref.idx) is not int or not 0 <= ref.idx < len(self):
            raise StatusListError(codes.R_STATUS_LIST_INDEX,
                                  f"the token's entry {ref.idx!r} is past the end of {self.sub!r}")
        return self.get(ref.idx)

    def check_time(self, now: int | None = None) -> None:
        """The time checks of :func:`verify_status_list` again, for a list kept since
        (a list past its ``exp`` must not be used: ``time.expired``)."""
        _check_times(self.iat, self.exp, int(time.time()) if now is None else now)

    def __repr__(self) -> str:
        return (f"StatusList(sub={self.sub!r}, bits={self.bits}, entries={len(self)}, iat={self.iat}, "
                f"exp={self.exp}, ttl={self.ttl}, kid={self.kid.hex()!r})")


def _claim_error(area: str, kind: str, name: str) -> StatusListError:
    return StatusListError(codes.claim_reason(area, kind, name), f"the list's {name} is {kind}")


def _required(raw: dict[Any, Any], key: Any, name: str, ok: Any, area: str = "claims") -> Any:
    if key not in raw:
        raise _claim_error(area, "missing", name)
    if not ok(raw[key]):
        raise _claim_error(area, "type", name)
    return raw[key]


def _claims(payload: bytes, now: int) -> tuple[str, int, bytes, int, int, int]:
    """The claims in their order, then the times: (sub, bits, the compressed lst,
    iat, exp, ttl). The inflate is left to the last, as the costliest check."""
    raw = cbor_decode(payload)
    if type(raw) is not dict:
        raise StatusListError(codes.R_CLAIMS_NOT_MAP, "the list's claims are not a map")
    sub = _required(raw, SUB, "sub", _is_text)
    iat = _required(raw, IAT, "iat", _is_int)
    exp = _required(raw, EXP, "exp", _is_int)
    ttl = _required(raw, TTL, "ttl", lambda v: _is_int(v) and v > 0)
    status_list = _required(raw, STATUS_LIST, "status_list", lambda v: type(v) is dict)
    if not all(type(key) is str for key in status_list):
        raise _claim_error("status_list", "type", "key")
    bits = _required(status_list, "bits", "bits", lambda v: _is_int(v) and v in BITS, "status_list")
    compressed = _required(status_list, "lst", "lst", lambda v: type(v) is bytes, "status_list")
    _check_times(iat, exp, now)
    return sub, bits, compressed, iat, exp, ttl


def verify_status_list(token: bytes, trust: TrustList, now: int | None = None) -> StatusList:
    """Verify a Status List Token (the raw COSE bytes, as served at
    ``/v1/status-lists/{name}``) against ``trust``'s Status List keys; the list,
    or :class:`~fastpath.StatusListError` naming the first check that failed."""
    _check_trust(trust)
    if now is None:
        now = int(time.time())
    if type(token) is not bytes:
        raise StatusListError(codes.R_INPUT_TYPE, f"a Status List Token is bytes, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_BYTES:
        raise StatusListError(codes.R_STATUS_LIST_TOO_LONG,
                              f"{len(token)} bytes: longer than any list within {MAX_LIST_BYTES} bytes")
    try:
        signed = check_cose(token, trust, USE_STATUS, STATUS_LIST_TYP)
        sub, bits, compressed, iat, exp, ttl = _claims(signed.payload, now)
        lst = inflate_bounded(compressed, MAX_LIST_BYTES)
    except _Reject as reject:  # the checks shared with permit tokens (WIRE-FORMAT 2, zlib)
        raise StatusListError(reject.reason, f"the Status List Token is refused: {reject.result}") from None
    return StatusList(sub=sub, bits=bits, lst=lst, iat=iat, exp=exp, ttl=ttl, kid=signed.kid)
