"""Status Lists as published (WIRE-FORMAT 8): the status-list writer stores them, the API serves them.

This module is where the two meet (as the index and the trust store are for the sync
job and the API): the names of the lists, their URIs, and their keys in Redis.

Two lists, built from the mirrored index by ``verifier status-lists`` (see
:mod:`verifier.status_lists`), an entry per status index the upstream assigned:

- ``permits``, 2 bits an entry: 0 valid, 1 cancelled, 2 suspended (on hold);
- ``cards``, 1 bit an entry: 0 valid, 1 not valid (lost, replaced, or its permit cancelled).

An entry that no record of the index claims reads "not valid" (1) in both: the
lists hold status, never a guess. Nothing about a person is in a list, only bits;
a permit's entry number is in its own token.

Keys (under the index's hash tag, so that one Lua script may check the writer's lock and
store a list atomically, also on a Redis Cluster; a FLUSHALL loses them and the writer
puts its current lists back at once)::

    {pv}:sl:list:<name>   hash    token (the COSE bytes), etag, iat, exp, ttl
    {pv}:sl:jwks          string  the public JWK Set of the list signing keys (use "status")
    {pv}:sl:leader        string  "<fence>:<owner>" of the writer that signs, with a TTL
    {pv}:sl:fence         counter fencing tokens of that lock

The API adds the JWK Set to the trust list it serves (:mod:`verifier.api.trust.service`),
so an offline verifier gets the list signers with the issuers, in one document.
"""

from __future__ import annotations

from typing import Final

import msgspec

from verifier.lib.redis_client import AsyncRedisClient, SyncRedisClient
from verifier.lib.settings import Settings

from .keys import DEFAULT_NAMESPACE, KeyLayout

__all__ = [
    "BITS",
    "CARDS",
    "CARD_INVALID",
    "CARD_VALID",
    "MEDIA_TYPE",
    "NAMES",
    "PATH",
    "PERMITS",
    "PERMIT_CANCELLED",
    "PERMIT_SUSPENDED",
    "PERMIT_VALID",
    "PUBLISH_JWKS",
    "PUBLISH_LIST",
    "PublishedList",
    "StatusListKeys",
    "list_uri",
    "base_uri",
    "load_published",
    "load_published_sync",
    "load_status_jwks",
]

PERMITS: Final = "permits"
CARDS: Final = "cards"
NAMES: Final = (PERMITS, CARDS)
BITS: Final = {PERMITS: 2, CARDS: 1}
"""Bits an entry, by list (WIRE-FORMAT 8)."""

PERMIT_VALID: Final = 0
PERMIT_CANCELLED: Final = 1
PERMIT_SUSPENDED: Final = 2
CARD_VALID: Final = 0
CARD_INVALID: Final = 1

MEDIA_TYPE: Final = "application/statuslist+cwt"
PATH: Final = "/v1/status-lists"
"""Where the API serves the lists: ``PATH/<name>``."""


def base_uri(settings: Settings) -> str:
    """The URI the lists are named under: ``settings.status_list_base_url``, or (not set) the
    API's own address, ``http://HOST:PORT/v1/status-lists``. The upstream mints its tokens
    with the same (``verifier upstream --status-lists``), so that their ``uri`` is the list's ``sub``."""
    return settings.status_list_base_url or f"http://{settings.host}:{settings.port}{PATH}"


def list_uri(base: str, name: str) -> str:
    """The URI of a list (its ``sub``, and the ``uri`` of every token's status claim): ``base/name``."""
    return f"{base.rstrip('/')}/{name}"


class StatusListKeys:
    """Key names of the Status Lists of one namespace."""

    __slots__ = ("prefix", "jwks", "leader", "fence")

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.prefix = f"{KeyLayout(namespace).tag}:sl:"
        self.jwks = (self.prefix + "jwks").encode()
        self.leader = (self.prefix + "leader").encode()
        self.fence = (self.prefix + "fence").encode()

    def list(self, name: str) -> bytes:
        if name not in NAMES:
            raise ValueError(f"no Status List named {name!r}")
        return f"{self.prefix}list:{name}".encode()


class PublishedList(msgspec.Struct, frozen=True):
    """A Status List Token as stored: what ``GET /v1/status-lists/{name}`` answers."""

    token: bytes
    """The COSE_Sign1 bytes."""
    etag: str
    """Quoted strong entity tag: the first 16 hex digits of SHA-256 of ``token``."""
    iat: int
    exp: int
    ttl: int


_FIELDS: Final = ("token", "etag", "iat", "exp", "ttl")

# KEYS: 1 the writer's lock, 2 the list's hash. ARGV: 1 "<fence>:<owner>", then token, etag, iat, exp, ttl.
# Stored only while the caller holds the lock: a writer that stalled past its lock cannot
# put an older list over its successor's.
PUBLISH_LIST: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('STALE_FENCE the status-list lock is not held by ' .. ARGV[1])
end
redis.call('HSET', KEYS[2], 'token', ARGV[2], 'etag', ARGV[3], 'iat', ARGV[4], 'exp', ARGV[5], 'ttl', ARGV[6])
return 1
"""

# KEYS: 1 the writer's lock, 2 the JWK Set key. ARGV: 1 "<fence>:<owner>", 2 the JWK Set, 3 trust channel.
# Returns 1 when the set changed (and the API workers were told to reload the trust list).
PUBLISH_JWKS: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('STALE_FENCE the status-list lock is not held by ' .. ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'status-keys')
return 1
"""


def _published(values: list[bytes | None]) -> PublishedList | None:
    token, etag, iat, exp, ttl = values
    if token is None or etag is None or iat is None or exp is None or ttl is None:
        return None
    return PublishedList(token=bytes(token), etag=etag.decode(), iat=int(iat), exp=int(exp), ttl=int(ttl))


async def load_published(redis: AsyncRedisClient, name: str,
                         keys: StatusListKeys | None = None) -> PublishedList | None:
    """The stored list ``name`` (one HMGET), or None when none is published yet."""
    keys = keys or StatusListKeys()
    return _published(await redis.hmget(keys.list(name), _FIELDS))


def load_published_sync(redis: SyncRedisClient, name: str,
                        keys: StatusListKeys | None = None) -> PublishedList | None:
    keys = keys or StatusListKeys()
    return _published(redis.hmget(keys.list(name), _FIELDS))


async def load_status_jwks(redis: AsyncRedisClient, keys: StatusListKeys | None = None) -> bytes | None:
    """The public JWK Set of the list signers, or None when the writer has not stored one yet."""
    keys = keys or StatusListKeys()
    data = await redis.get(keys.jwks)
    return bytes(data) if data is not None else None
