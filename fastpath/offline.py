"""Offline verification (WIRE-FORMAT 8): a code or a card read checked with no network.

What a scanner vendor embeds: this module and ``fastpath`` (PyNaCl under it, the
standard library for the rest). A *bundle* is the trust list and the two Status Lists,
fetched while online (``verifier offline fetch``, or your own three GETs of
``/v1/trust-list``, ``/v1/status-lists/permits`` and ``/v1/status-lists/cards``) and
kept in one file, ``offline-bundle.json``, replaced atomically::

    from fastpath.offline import OfflineBundle, OfflineVerifier

    verifier = OfflineVerifier(OfflineBundle.load("/var/lib/scanner"))
    verdict = verifier.verify_qr(text)            # never raises for bad input
    if verdict.ok:                                # VALID: signature, times and status
        print("valid, status as of", verdict.status_time, f"({verdict.age_s} s old)")
    else:
        print(verdict.result, verdict.reasons)    # e.g. PERMIT_CANCELLED ('status.cancelled',)

The results (WIRE-FORMAT 8, "Offline result rules"), after fastpath's own checks:

- a token without the status claim: ``STATUS_UNAVAILABLE`` (``status.no_claim``); its
  signature result is still what fastpath said when that failed;
- its list missing from the bundle, refused (signature, key, ``typ``), past its
  ``exp``, another list than the token names, or too short for its entry:
  ``STATUS_UNAVAILABLE``, with the list's reason (``status_list.missing``,
  ``time.expired``, ``signature.invalid``, ``status_list.uri``, ...);
- ``permits``: 1 ``PERMIT_CANCELLED`` (``status.cancelled``), 2 ``PERMIT_CANCELLED``
  (``status.suspended``), 3 (no meaning) ``STATUS_UNAVAILABLE``
  (``status_list.value``); ``cards``: 1 ``CARD_INVALID`` (``status.card_invalid``);
- ``0`` with every other check passed: ``VALID``, the list's ``iat`` as the status time;
- an ES1 code already accepted by this verifier within its lifetime: ``REPLAYED``
  (the same code again within 10 s is the scanner's double read: the verdict again,
  ``repeat`` True), as the service does.

What no list can say stays with the token: ``SUPERSEDED`` (a newer version of the
permit) and the permit's end date are not checked offline.

A card read: :meth:`OfflineVerifier.new_challenge` gives the 32 bytes for the card to
sign (single use, 60 s, as the service's); a read whose challenge this verifier did not
give is ``CHALLENGE_INVALID``, unless the caller vouches for it (``trusted_challenge``:
a read file made by a terminal that drew its own).

Verdicts have the API's shape (:meth:`OfflineVerdict.as_dict`): ``index_as_of.time``
is the list's ``iat`` and ``lag_s`` how old it was when checked.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from . import codes
from ._trust import USE_STATUS, TrustList, b64url_decode_strict
from ._verdict import StatusRef, Verdict
from ._verify_py import _CARD_REASON_RESULTS, cbor_decode, check_cose
from .errors import FastpathError, StatusListError, TrustListError
from .status_list import MAX_TOKEN_BYTES, STATUS_LIST_TYP, StatusList, verify_status_list

__all__ = [
    "BUNDLE_FILE",
    "BUNDLE_FORMAT",
    "BundleError",
    "CARDS",
    "MAX_BUNDLE_BYTES",
    "OfflineBundle",
    "OfflineVerdict",
    "OfflineVerifier",
    "PERMITS",
]

BUNDLE_FILE: Final = "offline-bundle.json"
BUNDLE_FORMAT: Final = "permit-verifier/offline-bundle/1"
PERMITS: Final = "permits"
CARDS: Final = "cards"
LIST_BITS: Final = {PERMITS: 2, CARDS: 1}
MAX_BUNDLE_BYTES: Final = 3 * MAX_TOKEN_BYTES
"""The bundle file, at most: two lists at fastpath's bound, in base64, and a trust list."""

# Reasons of the offline checks (fastpath's catalogue has the rest: codes.py).
R_NO_CLAIM: Final = "status.no_claim"            # the token carries no status claim (65535)
R_LIST_MISSING: Final = "status_list.missing"    # the bundle has no list for it
R_LIST_VALUE: Final = "status_list.value"        # an entry value the list's meaning does not have
R_CANCELLED: Final = "status.cancelled"
R_SUSPENDED: Final = "status.suspended"
R_CARD_INVALID: Final = "status.card_invalid"    # lost, replaced, or its permit cancelled
R_REPLAYED: Final = "status.replayed"
R_CHALLENGE_UNKNOWN: Final = "challenge.unknown"  # not given by this verifier, used, or expired

CHALLENGE_LENGTH: Final = 32
CHALLENGE_LIFETIME_S: Final = 60
REPEAT_WINDOW_S: Final = 10
_MAX_REMEMBERED: Final = 100_000
_LEEWAY: Final = 60

# The permit as the API shows it (verifier.api.verdicts.schemas.PermitView), in its order.
PERMIT_FIELDS: Final = ("pn", "status", "cat", "emp", "vf", "vt", "n", "nat", "dob", "v", "ssn", "cn",
                        "card_status")


class BundleError(FastpathError, ValueError):
    """A bundle that cannot be used at all (unreadable, not a bundle, a bad trust list);
    the message says why. A list that fails its checks is not this: it makes the
    verdicts that need it ``STATUS_UNAVAILABLE``."""


def _rfc3339(epoch: float) -> str:
    moment = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: object, what: str) -> bytes:
    decoded = b64url_decode_strict(text)  # as the bundle writes it: unpadded, canonical
    if decoded is None:
        raise BundleError(f"bundle: {what} is not unpadded base64url")
    return decoded


class OfflineBundle:
    """A trust list and the Status Lists, verified when made (:meth:`from_parts`, :meth:`load`).

    - ``trust``: the :class:`~fastpath.TrustList` (issuers and list signers);
    - ``lists``: ``permits`` and ``cards`` each a :class:`~fastpath.StatusList`, or the
      :class:`~fastpath.StatusListError` that refused it (its verdicts are
      ``STATUS_UNAVAILABLE`` with that reason);
    - ``tokens``, ``trust_list``, ``receipt_keys``: the documents as fetched (for saving);
    - ``source``, ``fetched_at``: where and when (epoch seconds) they were fetched.
    """

    __slots__ = ("trust", "lists", "tokens", "trust_list", "receipt_keys", "source", "fetched_at")

    def __init__(self, trust: TrustList, lists: dict[str, StatusList | StatusListError], tokens: dict[str, bytes],
                 trust_list: dict[str, Any], receipt_keys: dict[str, Any] | None, source: str,
                 fetched_at: int) -> None:
        self.trust = trust
        self.lists = lists
        self.tokens = tokens
        self.trust_list = trust_list
        self.receipt_keys = receipt_keys
        self.source = source
        self.fetched_at = fetched_at

    @classmethod
    def from_parts(cls, trust_list: bytes | str | Mapping[str, Any], tokens: Mapping[str, bytes], *,
                   now: int | None = None, receipt_keys: Mapping[str, Any] | None = None, source: str = "",
                   fetched_at: int | None = None) -> "OfflineBundle":
        """A bundle of a trust list (JWK Set: bytes, text or a parsed object) and Status List
        Tokens by name. A bad trust list is :class:`BundleError`; each list is verified now
        (``now``, default the clock) and kept with its error if refused."""
        if isinstance(trust_list, Mapping):
            document = dict(trust_list)
        else:
            try:
                document = json.loads(trust_list)
            except (ValueError, UnicodeDecodeError) as exc:
                raise BundleError(f"bundle: the trust list is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise BundleError("bundle: the trust list is not a JSON object")
        try:
            # only the JWK Set's own members: the service adds its "version"
            trust = TrustList.from_jwks(json.dumps({"keys": document.get("keys")}))
        except TrustListError as exc:
            raise BundleError(f"bundle: {exc}") from None
        except (TypeError, ValueError):  # a mapping that holds what JSON does not
            raise BundleError("bundle: the trust list is not JSON") from None
        now = int(time.time()) if now is None else now
        lists: dict[str, StatusList | StatusListError] = {}
        kept: dict[str, bytes] = {}
        for name, token in tokens.items():
            if name not in LIST_BITS:
                raise BundleError(f"bundle: no Status List is named {name!r}")
            if type(token) is not bytes:
                raise BundleError(f"bundle: the {name} list is not bytes")
            kept[name] = token
            lists[name] = _verified(name, token, trust, now)
        return cls(trust, lists, kept, document, dict(receipt_keys) if receipt_keys is not None else None, source,
                   now if fetched_at is None else fetched_at)

    # --- the bundle file ------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The bundle file: JSON, the tokens in base64url."""
        document: dict[str, Any] = {
            "format": BUNDLE_FORMAT, "source": self.source, "fetched_at": self.fetched_at,
            "trust_list": self.trust_list,
            "status_lists": {name: _b64url(token) for name, token in sorted(self.tokens.items())},
        }
        if self.receipt_keys is not None:
            document["receipt_keys"] = self.receipt_keys
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *, now: int | None = None) -> "OfflineBundle":
        """The bundle of a bundle file's bytes (:meth:`to_bytes`); :class:`BundleError` when it is none."""
        if type(data) is not bytes:
            raise BundleError("bundle: not bytes")
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleError(f"bundle: {len(data)} bytes, more than any bundle ({MAX_BUNDLE_BYTES})")
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BundleError("bundle: not JSON") from None
        if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"bundle: not a {BUNDLE_FORMAT} document")
        lists = document.get("status_lists")
        fetched_at = document.get("fetched_at")
        source = document.get("source")
        receipt_keys = document.get("receipt_keys")
        if not isinstance(lists, dict) or type(fetched_at) is not int or not isinstance(source, str) \
                or not (receipt_keys is None or isinstance(receipt_keys, dict)) \
                or not isinstance(document.get("trust_list"), dict):
            raise BundleError("bundle: a member is missing or of the wrong type")
        tokens = {str(name): _b64url_decode(text, f"the {name} list") for name, text in lists.items()}
        return cls.from_parts(document["trust_list"], tokens, now=now, receipt_keys=receipt_keys, source=source,
                              fetched_at=fetched_at)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, now: int | None = None) -> "OfflineBundle":
        """The bundle in a directory (its :data:`BUNDLE_FILE`) or a bundle file."""
        where = Path(path)
        if where.is_dir():
            where = where / BUNDLE_FILE
        try:
            with open(where, "rb") as handle:
                data = handle.read(MAX_BUNDLE_BYTES + 1)
        except OSError as exc:
            raise BundleError(f"bundle: cannot read {where}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, now=now)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the bundle file into ``directory`` atomically: a temporary file, flushed to
        disk, renamed over the old one; a bundle half written never replaces a good one."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / BUNDLE_FILE
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{BUNDLE_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.to_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        try:  # the rename itself, durable
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass  # not every file system lets a directory be opened; the rename is done
        return target

    def status_time(self, name: str) -> int | None:
        """The ``iat`` of list ``name`` (when it is usable)."""
        held = self.lists.get(name)
        return held.iat if isinstance(held, StatusList) else None

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={held!r}" if isinstance(held, StatusList) else f"{name}=refused({held.reason})"
                          for name, held in sorted(self.lists.items()))
        return f"OfflineBundle(trust={self.trust!r}, {parts}, fetched_at={self.fetched_at})"


def _verified(name: str, token: bytes, trust: TrustList, now: int) -> StatusList | StatusListError:
    """The list, or why not. A list past its exp is still read (its signature checked as of its
    own iat), so that a verdict can say "expired"; every use checks its time again."""
    try:
        held = verify_status_list(token, trust, now)
    except StatusListError as exc:
        if exc.reason != codes.R_TIME_EXPIRED:
            return exc
        try:
            held = verify_status_list(token, trust, _issued_at(token, trust))
        except StatusListError as again:
            return again
    if held.bits != LIST_BITS[name]:
        return StatusListError("status_list.type.bits", f"the {name} list has {held.bits} bits an entry")
    return held


def _issued_at(token: bytes, trust: TrustList) -> int:
    """The iat of a token that verify_status_list found expired (so its claims' types held)."""
    return int(cbor_decode(check_cose(token, trust, USE_STATUS, STATUS_LIST_TYP).payload)[6])


class OfflineVerdict:
    """What an offline check answers: fastpath's verdict with the status the bundle gave it.

    ``result``, ``reasons``, ``profile``, ``ok``; ``permit`` (the token's fields with the
    list's status; None before the signature held), ``claims``, ``status_ref``;
    ``status_list`` (the list read), ``status_time`` (its ``iat``), ``checked_at``,
    ``age_s`` (how old the status was), ``repeat`` (an ES1 double read).
    """

    # The permit is shaped when asked for (a dict of up to 13 fields: a third of the
    # offline check's own cost), so that a scanner that only wants the result pays nothing.
    __slots__ = ("result", "reasons", "verdict", "checked_at", "status_list", "status_time", "repeat",
                 "_status", "_permit")

    def __init__(self, result: str, reasons: tuple[str, ...], verdict: Verdict, checked_at: int,
                 status_list: str | None = None, status_time: int | None = None, status: str | None = None) -> None:
        self.result = result
        self.reasons = reasons
        self.verdict = verdict
        """fastpath's verdict of the token itself."""
        self.checked_at = checked_at
        self.status_list = status_list
        self.status_time = status_time
        self.repeat = False
        self._status = status
        self._permit: dict[str, Any] | None | bool = False  # False: not shaped yet

    @property
    def ok(self) -> bool:
        return self.result == codes.VALID

    @property
    def profile(self) -> str | None:
        return self.verdict.profile

    @property
    def claims(self) -> dict[str, Any] | None:
        return self.verdict.claims

    @property
    def status_ref(self) -> StatusRef | None:
        return self.verdict.status_ref

    @property
    def permit(self) -> dict[str, Any] | None:
        """The token's permit in the API's field order (None before its signature held), with
        the list's status: ``status`` of a permit, ``card_status`` of a valid card."""
        if self._permit is False:
            held = self.verdict.permit if self.result not in _BEFORE_THE_PERMIT else None
            if held is None:
                self._permit = None
            else:
                shown = dict(held)
                if self._status is not None:
                    shown["card_status" if self.status_list == CARDS else "status"] = self._status
                self._permit = {field: shown[field] for field in PERMIT_FIELDS if shown.get(field) is not None}
        return self._permit  # type: ignore[return-value]

    @property
    def age_s(self) -> int | None:
        """Seconds between the list's iat and the check (None when no list was read)."""
        return None if self.status_time is None else self.checked_at - self.status_time

    def as_dict(self) -> dict[str, Any]:
        """The API's verdict shape (``POST /v1/verify/qr``): ``index_as_of.time`` is the list's
        iat, ``lag_s`` its age; ``seq`` is null (a list has no feed position)."""
        out: dict[str, Any] = {
            "result": self.result, "reasons": list(self.reasons), "profile": self.profile, "permit": self.permit,
            "checked_at": _rfc3339(self.checked_at),
            "index_as_of": ({"seq": None, "time": _rfc3339(self.status_time)} if self.status_time is not None
                            else None),
            "lag_s": self.age_s,
        }
        if self.repeat:
            out["repeat"] = True
        return out

    def __repr__(self) -> str:  # no permit data: a repr ends up in logs
        return (f"OfflineVerdict(result={self.result!r}, reasons={self.reasons!r}, profile={self.profile!r}, "
                f"status_list={self.status_list!r}, age_s={self.age_s!r})")


class OfflineVerifier:
    """Checks codes and card reads against one bundle; keeps the ES1 codes and challenges it
    saw (in memory, bounded), as the service's replay guard and challenge store do.

    ``twin``: the module whose ``verify_qr`` and ``verify_card_certificate`` to use
    (default: ``fastpath``, the compiled twin when built); tests pass each twin.
    """

    def __init__(self, bundle: OfflineBundle, *, twin: ModuleType | None = None) -> None:
        if twin is None:
            import fastpath as twin
        self.bundle = bundle
        self._verify_qr = twin.verify_qr
        self._verify_card_certificate = twin.verify_card_certificate
        self._check_card_signature = twin.check_card_signature
        self._seen: dict[bytes, tuple[int, int]] = {}
        """ES1 cti -> (first accepted at, exp)."""
        self._challenges: dict[bytes, int] = {}
        """challenge -> expires at."""

    # --- QR codes ------------------------------------------------------------------

    def verify_qr(self, text: str, now: int | None = None, *, cache: bool = True) -> OfflineVerdict:
        """A WP1 or ES1 code, offline. Never raises for bad input."""
        now = int(time.time()) if now is None else now
        verdict = self._verify_qr(text, self.bundle.trust, now, cache=cache)
        if verdict.result != codes.VALID:
            return OfflineVerdict(verdict.result, verdict.reasons, verdict, now)
        answer = self._status(verdict, PERMITS, now)
        if answer.ok and verdict.profile == codes.PROFILE_ES1:
            return self._replay_checked(answer, verdict, now)
        return answer

    def _replay_checked(self, answer: OfflineVerdict, verdict: Verdict, now: int) -> OfflineVerdict:
        claims: dict[str, Any] = verdict.claims  # type: ignore[assignment]
        cti, exp = claims["cti"], claims["exp"]
        seen = self._seen.get(cti)
        if seen is None:
            self._remember(self._seen, cti, (now, exp + _LEEWAY), now)
            return answer
        if now - seen[0] <= REPEAT_WINDOW_S:
            answer.repeat = True
            return answer
        answer.result, answer.reasons = codes.REPLAYED, (R_REPLAYED,)
        return answer

    # --- card reads ----------------------------------------------------------------

    def new_challenge(self, now: int | None = None) -> bytes:
        """32 random bytes for a card to sign, usable once within 60 s."""
        now = int(time.time()) if now is None else now
        challenge = secrets.token_bytes(CHALLENGE_LENGTH)
        self._remember(self._challenges, challenge, now + CHALLENGE_LIFETIME_S, now)
        return challenge

    def verify_card(self, certificate: bytes, challenge: bytes, signature: bytes, now: int | None = None, *,
                    trusted_challenge: bool = False) -> OfflineVerdict:
        """A card read (WIRE-FORMAT 6), offline: the certificate, the challenge (one of
        :meth:`new_challenge`'s, used up now, unless ``trusted_challenge``), the card's
        signature, then its entry in ``cards``. Never raises for bad input."""
        now = int(time.time()) if now is None else now
        verdict = self._verify_card_certificate(certificate, self.bundle.trust, now)
        fresh = trusted_challenge or self._take_challenge(challenge, now)
        if verdict.result != codes.VALID:
            return OfflineVerdict(verdict.result, verdict.reasons, verdict, now)
        if not fresh:
            return OfflineVerdict(codes.CHALLENGE_INVALID, (R_CHALLENGE_UNKNOWN,), verdict, now)
        reason = self._check_card_signature(verdict.card_public_key, challenge, signature)
        if reason is not None:
            return OfflineVerdict(_CARD_REASON_RESULTS.get(reason, codes.MALFORMED), (reason,), verdict, now)
        return self._status(verdict, CARDS, now)

    def _take_challenge(self, challenge: object, now: int) -> bool:
        if type(challenge) is not bytes:
            return False
        expires = self._challenges.pop(challenge, None)  # used up, good or bad: single use
        return expires is not None and now < expires

    # --- the status ----------------------------------------------------------------

    def _status(self, verdict: Verdict, name: str, now: int) -> OfflineVerdict:
        """WIRE-FORMAT 8: the token's entry in its list, or why it cannot be read."""
        ref: StatusRef | None = verdict.status_ref
        if ref is None:
            return OfflineVerdict(codes.STATUS_UNAVAILABLE, (R_NO_CLAIM,), verdict, now)
        held = self.bundle.lists.get(name)
        if held is None:
            return OfflineVerdict(codes.STATUS_UNAVAILABLE, (R_LIST_MISSING,), verdict, now, name)
        if isinstance(held, StatusListError):
            return OfflineVerdict(codes.STATUS_UNAVAILABLE, (held.reason,), verdict, now, name)
        try:
            held.check_time(now)
            entry = held.status_of(ref)
        except StatusListError as exc:
            return OfflineVerdict(codes.STATUS_UNAVAILABLE, (exc.reason,), verdict, now, name, held.iat)
        result, reasons, status = _ENTRIES[name].get(entry, _UNKNOWN_ENTRY)
        return OfflineVerdict(result, reasons, verdict, now, name, held.iat, status)

    @staticmethod
    def _remember(table: dict[bytes, Any], key: bytes, value: Any, now: int) -> None:
        """Insert, dropping what has expired once the table is full (bounded memory)."""
        if len(table) >= _MAX_REMEMBERED:
            for old, held in list(table.items()):
                expires = held[1] if isinstance(held, tuple) else held
                if expires <= now:
                    del table[old]
            while len(table) >= _MAX_REMEMBERED:  # all current: the oldest go
                del table[next(iter(table))]
        table[key] = value


# entry -> (result, reasons, the status shown in the permit)
_ENTRIES: Final[dict[str, dict[int, tuple[str, tuple[str, ...], str | None]]]] = {
    PERMITS: {0: (codes.VALID, (), "active"),
              1: (codes.PERMIT_CANCELLED, (R_CANCELLED,), "cancelled"),
              2: (codes.PERMIT_CANCELLED, (R_SUSPENDED,), "cancelled")},
    # a card not valid may be lost, replaced, or its permit's cancelled: the list does not say
    # which, so the permit shows no card_status (the API's values are active, lost, replaced)
    CARDS: {0: (codes.VALID, (), "active"),
            1: (codes.CARD_INVALID, (R_CARD_INVALID,), None)},
}
_UNKNOWN_ENTRY: Final = (codes.STATUS_UNAVAILABLE, (R_LIST_VALUE,), None)
# results before the token's signature and times (and a card's challenge and signature) held:
# the permit is not shown, as online
_BEFORE_THE_PERMIT: Final = frozenset({codes.MALFORMED, codes.UNSUPPORTED, codes.UNKNOWN_KEY, codes.KEY_REVOKED,
                                       codes.BAD_SIGNATURE, codes.NOT_YET_VALID, codes.EXPIRED,
                                       codes.CHALLENGE_INVALID})
