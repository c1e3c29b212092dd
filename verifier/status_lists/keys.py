"""The Status List signing keys: a key set of their own, kept in the store of record.

Not the permit issuers' keys: those belong to the upstream, these to this service
(WIRE-FORMAT 8). Their public keys are published in the trust list the API serves
with ``use`` "status", so a verifier trusts them for lists and for nothing else
(fastpath keeps the two uses apart). ``iss`` (which fastpath requires of every key)
names the URI the lists are published under.

They are Ed25519 keys like the issuers' (:class:`verifier.issuing.keys.IssuerKey`) and
rotate like them: ``verifier status-lists keys rotate`` makes a new active key and
retires the previous one (it no longer signs, and still verifies the lists it signed
until they expire); ``revoke`` marks one compromised (every list it signed is refused).
The newest active key signs.

Where: the store of record (``Settings.store_url_or_index``), one key
(:data:`SIGNING_KEYS_KEY`) holding the ring as JSON (the private JWKs of
:mod:`verifier.issuing.keys`' key files, with ``use`` "status"), so that they survive
restarts and rebuilds of the index, and every writer signs with the same keys. They are
never written to the repository, a file or a log. The first writer that finds none
makes one (SET NX); a writer that finds them gone (a flushed store) puts back the ring
it holds. Changes are compare-and-set (a Lua script), so a rotation and a writer
restoring the ring cannot overwrite each other.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from verifier.issuing.keys import IssuerKey, KeyFileError, KeyRing
from verifier.lib.redis_client import SyncRedisClient

__all__ = [
    "RING_FORMAT",
    "SIGNING_KEYS_KEY",
    "StatusKeyError",
    "decode_ring",
    "encode_ring",
    "load_or_create",
    "public_jwks",
    "revoke",
    "rotate",
]

SIGNING_KEYS_KEY: Final = "pv:status-lists:signing-keys"
"""In the store of record: the signing key ring (JSON). Secret."""
RING_FORMAT: Final = "permit-verifier/status-list-keys/1"
USE_STATUS: Final = "status"

# KEYS: 1 the ring. ARGV: 1 the ring as read ('' when there was none), 2 the new ring.
# Returns 1 when written, 0 when the ring changed meanwhile (read again, retry).
_COMPARE_AND_SET: Final = """
local held = redis.call('GET', KEYS[1])
if (held or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class StatusKeyError(Exception):
    """The stored ring cannot be used (corrupt, or no key to sign with); the message says why."""


def _status_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    return {**jwk, "use": USE_STATUS}


def public_jwks(ring: KeyRing) -> bytes:
    """The public JWK Set of the ring, ``use`` "status" (canonical JSON: the same ring, the same bytes)."""
    return orjson.dumps({"keys": [_status_jwk(key.to_jwk()) for key in ring]}, option=orjson.OPT_SORT_KEYS)


def encode_ring(ring: KeyRing) -> bytes:
    """The ring as stored: private JWKs. Secret."""
    return orjson.dumps({"format": RING_FORMAT, "keys": [_status_jwk(key.to_private_jwk()) for key in ring]},
                        option=orjson.OPT_SORT_KEYS)


def decode_ring(data: bytes) -> KeyRing:
    """The ring stored as :func:`encode_ring` wrote it; :class:`StatusKeyError` if it is not."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StatusKeyError(f"{SIGNING_KEYS_KEY} is not JSON") from exc
    if not isinstance(document, dict) or document.get("format") != RING_FORMAT \
            or not isinstance(document.get("keys"), list) or not document["keys"]:
        raise StatusKeyError(f"{SIGNING_KEYS_KEY} is not a {RING_FORMAT} key ring")
    try:
        keys = [IssuerKey.from_private_jwk(jwk) for jwk in document["keys"]]
        if any(jwk.get("use") != USE_STATUS for jwk in document["keys"]):
            raise KeyFileError("a key of the ring is not for Status Lists (use)")
        return KeyRing(keys)
    except (KeyFileError, ValueError) as exc:
        raise StatusKeyError(f"{SIGNING_KEYS_KEY}: {exc}") from None


def _read(store: SyncRedisClient) -> bytes | None:
    data = store.get(SIGNING_KEYS_KEY)
    return bytes(data) if data is not None else None


def _compare_and_set(store: SyncRedisClient, held: bytes | None, ring: KeyRing) -> bool:
    script = store.register_script(_COMPARE_AND_SET)
    return bool(script(keys=[SIGNING_KEYS_KEY], args=[held or b"", encode_ring(ring)]))


def load_or_create(store: SyncRedisClient, issuers: list[str], current: KeyRing | None = None) -> KeyRing:
    """The stored ring; when there is none, ``current`` put back (a flushed store) or, with
    no ``current``, a new ring of one active key for ``issuers`` (the first start)."""
    for _attempt in range(5):
        held = _read(store)
        if held is not None:
            return decode_ring(held)
        ring = current if current is not None else KeyRing([IssuerKey.generate(issuers)])
        if _compare_and_set(store, None, ring):
            return ring
    raise StatusKeyError(f"{SIGNING_KEYS_KEY} kept changing; try again")


def _change(store: SyncRedisClient, change: Any) -> tuple[KeyRing, IssuerKey]:
    for _attempt in range(5):
        held = _read(store)
        if held is None:
            raise StatusKeyError(f"no Status List signing keys in the store yet ({SIGNING_KEYS_KEY}): "
                                 "start 'verifier status-lists run' once, it makes the first")
        ring = decode_ring(held)
        key = change(ring)
        if _compare_and_set(store, held, ring):
            return ring, key
    raise StatusKeyError(f"{SIGNING_KEYS_KEY} kept changing; try again")


def rotate(store: SyncRedisClient, issuers: list[str] | None = None) -> tuple[KeyRing, IssuerKey]:
    """A new active key; the active ones become retired. Returns the ring and the new key."""
    return _change(store, lambda ring: ring.rotate(issuers, created=int(time.time())))


def revoke(store: SyncRedisClient, kid: str) -> tuple[KeyRing, IssuerKey]:
    """Mark a key compromised (final). Returns the ring and the key."""
    def change(ring: KeyRing) -> IssuerKey:
        try:
            return ring.revoke(kid)
        except (KeyError, ValueError) as exc:
            raise StatusKeyError(f"no Status List signing key with kid {kid!r}") from exc
    return _change(store, change)
