"""API keys: created, listed and revoked by operators (``verifier api-keys``), checked on every request.

A key is ``pvk_<key id>_<secret>``: the key id (12 hex digits) is visible in logs,
the audit stream and ``api-keys list``; the secret (32 random bytes) is shown once at
creation and stored only as SHA-256 of the whole token (a high-entropy secret needs
no slow hash), compared with ``hmac.compare_digest``.

Layout, in the store of record (``settings.store_url``: nothing can rebuild a key,
so keys never live in the index's Redis unless no store is configured):
``pv:apikey:<id>`` a hash (digest, role, name, organisation, employers, full_fields,
created, revoked), ``pv:apikeys`` the set of ids, ``pv:apikeys:organisations`` the set
of organisation names keys were made for (the terminal registry,
:mod:`verifier.api.auth.terminals`, lives beside them under the same prefix: all of it
is data of record, not a cache). A revoked key keeps its record, so audit records stay
explainable (and "who verified me" can name its organisation).

Each worker keeps the records it has seen for ``CACHE_TTL_S`` seconds, so a request
usually needs no Redis round trip to authenticate. A revocation is published on
``REVOKED_CHANNEL``; every worker's subscriber drops that key at once (pub/sub
delivery time). Pub/sub is at-most-once: a worker whose subscription was down
clears its whole cache when it subscribes again, and ``CACHE_TTL_S`` bounds the
delay in any case. While the store is unreachable a worker keeps using the records
it has read for up to ``STALE_LIMIT_S`` (5 minutes) after reading them, so that
verification goes on through a short outage of the store (no key can be revoked
meanwhile: revoking needs the store); past that, and for a key it never saw, it
answers 503.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from verifier.api.auth.roles import Role
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = [
    "ApiKeyError",
    "ApiKeyInfo",
    "Caller",
    "KeyVerifier",
    "REVOKED_CHANNEL",
    "add_api_key",
    "check_organisation",
    "list_api_keys",
    "organisations_of",
    "revoke_api_key",
]

KEY_PREFIX = "pv:apikey:"
KEY_SET = "pv:apikeys"
ORGANISATION_SET = "pv:apikeys:organisations"
REVOKED_CHANNEL = "pv:apikeys:revoked"
"""Pub/sub channel: the id of each key just revoked."""
CACHE_TTL_S = 5.0
"""How long a worker trusts a key record it read (the revocation delay)."""
STALE_LIMIT_S = 300.0
"""While the store is unreachable: how long after reading it a worker still trusts a key record."""
_NEGATIVE_TTL_S = 1.0
_RETRY_S = 0.5
_CACHE_LIMIT = 10_000

_TOKEN_RE = re.compile(r"pvk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_EMPLOYER_RE = re.compile(r"[0-9A-Z]{18}")
_ROLES = frozenset(role.value for role in Role)


class ApiKeyError(ValueError):
    """A key that cannot be created as asked (unknown role, bad employer code, ...)."""


class Caller(msgspec.Struct, frozen=True):
    """Who is calling: the authenticated key's id, role and bindings."""

    key_id: str
    role: Role
    name: str
    organisation: str = ""
    """The organisation the key was made for (its ``name`` for keys made without one)."""
    employers: frozenset[str] = frozenset()
    """Partner keys: the employer credit codes whose permits the key may see."""
    full_fields: bool = False
    """Partner keys: see the full field set for their own employers' permits."""


class ApiKeyInfo(msgspec.Struct, frozen=True):
    """A key as listed for operators (never the secret or its digest)."""

    key_id: str
    role: str
    name: str
    organisation: str
    employers: tuple[str, ...]
    full_fields: bool
    created: float
    revoked: float | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def check_organisation(organisation: str) -> str:
    """An organisation name as stored (trimmed); ApiKeyError when it cannot be one."""
    organisation = organisation.strip()
    if not organisation or len(organisation) > 200 or any(ord(c) < 32 for c in organisation):
        raise ApiKeyError("an organisation needs a name of 1 to 200 printable characters")
    return organisation


async def add_api_key(
    redis: AsyncRedisClient,
    role: str,
    name: str,
    employers: Iterable[str] = (),
    *,
    full_fields: bool = False,
    organisation: str | None = None,
) -> tuple[str, str]:
    """Create a key; returns ``(key_id, token)``. The token is not stored and cannot be shown again.

    ``organisation``: who the key is for, by the name holders are shown in "who verified
    me" (default: the key's ``name``)."""
    try:
        role = Role(role)
    except ValueError:
        raise ApiKeyError(f"unknown role {role!r}; one of {', '.join(r.value for r in Role)}") from None
    employer_codes = tuple(dict.fromkeys(employers))
    for code in employer_codes:
        if not _EMPLOYER_RE.fullmatch(code):
            raise ApiKeyError(f"an employer code is 18 characters of 0-9 and A-Z: {code!r}")
    if role == Role.PARTNER and not employer_codes:
        raise ApiKeyError("a partner key must be bound to at least one employer code")
    if role != Role.PARTNER and (employer_codes or full_fields):
        raise ApiKeyError("only partner keys are bound to employers")
    if not name or len(name) > 200:
        raise ApiKeyError("a key needs a name of 1 to 200 characters")
    organisation = check_organisation(name if organisation is None else organisation)
    key_id = secrets.token_hex(6)
    token = f"pvk_{key_id}_{secrets.token_urlsafe(32)}"
    record = {
        "digest": _digest(token),
        "role": role.value,
        "name": name,
        "organisation": organisation,
        "employers": ",".join(employer_codes),
        "full_fields": "1" if full_fields else "0",
        "created": repr(time.time()),
        "revoked": "",
    }
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(KEY_PREFIX + key_id, mapping=record)
        pipe.sadd(KEY_SET, key_id)
        pipe.sadd(ORGANISATION_SET, organisation)
        await pipe.execute()
    return key_id, token


async def organisations_of(redis: AsyncRedisClient, key_ids: Iterable[str]) -> dict[str, str]:
    """The organisation name behind each key id (revoked keys too; keys of before
    organisations existed: their name). A key id with no record is left out."""
    ids = list(dict.fromkeys(key_ids))
    if not ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for key_id in ids:
            pipe.hmget(KEY_PREFIX + key_id, "organisation", "name")
        replies = await pipe.execute()
    names = {}
    for key_id, (organisation, name) in zip(ids, replies):
        chosen = organisation or name
        if chosen:
            names[key_id] = chosen.decode() if isinstance(chosen, bytes) else chosen
    return names


async def list_api_keys(redis: AsyncRedisClient) -> list[ApiKeyInfo]:
    """Every key ever created, revoked ones included, oldest first."""
    ids = sorted(
        (i.decode() if isinstance(i, bytes) else i) for i in await redis.smembers(KEY_SET)
    )
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key_id in ids:
            pipe.hgetall(KEY_PREFIX + key_id)
        records = await pipe.execute()
    keys = []
    for key_id, raw in zip(ids, records):
        if not raw:
            continue
        record = _decode(raw)
        keys.append(ApiKeyInfo(
            key_id=key_id,
            role=record.get("role", ""),
            name=record.get("name", ""),
            organisation=record.get("organisation") or record.get("name", ""),
            employers=tuple(e for e in record.get("employers", "").split(",") if e),
            full_fields=record.get("full_fields") == "1",
            created=float(record.get("created") or 0),
            revoked=float(record["revoked"]) if record.get("revoked") else None,
        ))
    keys.sort(key=lambda k: k.created)
    return keys


async def revoke_api_key(redis: AsyncRedisClient, key_id: str) -> bool:
    """Revoke a key (by id, or by its whole token); False when there is no such live key."""
    match = _TOKEN_RE.fullmatch(key_id)
    if match:
        key_id = match.group(1)
    key = KEY_PREFIX + key_id
    revoked = await redis.hget(key, "revoked")
    if revoked is None or revoked not in (b"", ""):
        return False
    await redis.hset(key, "revoked", repr(time.time()))
    await redis.publish(REVOKED_CHANNEL, key_id)
    return True


class KeyVerifier:
    """One worker's key checker, with its small cache of key records."""

    __slots__ = ("_redis", "_cache", "_tokens", "stale_limit_s", "_retry_at")

    def __init__(self, redis: AsyncRedisClient, stale_limit_s: float = STALE_LIMIT_S) -> None:
        self._redis = redis
        self.stale_limit_s = stale_limit_s
        self._retry_at = 0.0
        """After a failed read: no read of a record this worker holds before this (monotonic) time."""
        # key id -> (fetched_at, digest or None for "no such live key", caller)
        self._cache: dict[str, tuple[float, str | None, Caller | None]] = {}
        # token -> the cache entry it matched (see known()); like the request that brought it,
        # the token is in this worker's memory only, never written anywhere
        self._tokens: dict[str, tuple[float, str | None, Caller | None]] = {}

    async def authenticate(self, token: str) -> Caller | None:
        """The caller behind a token, or None for a missing, malformed, unknown or revoked key.

        Raises the REDIS_UNAVAILABLE errors when the store cannot be asked and this worker
        never read the key, or read it more than ``stale_limit_s`` ago.
        """
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            return None
        key_id = match.group(1)
        now = time.monotonic()
        entry = self._cache.get(key_id)
        if entry is None or (now - entry[0] > (CACHE_TTL_S if entry[1] else _NEGATIVE_TTL_S) and now >= self._retry_at):
            try:
                entry = await self._fetch(key_id, now)
            except REDIS_UNAVAILABLE:
                if entry is None or now - entry[0] > self.stale_limit_s:
                    raise
                # The store is away: keep the record we had, for a while (see the module docstring),
                # and do not ask again on every request.
                self._retry_at = now + _RETRY_S
        elif now - entry[0] > self.stale_limit_s:
            raise ConnectionError("the store of record has not answered for longer than the key cache may be trusted")
        digest, caller = entry[1], entry[2]
        if digest is None or caller is None:
            return None
        if not hmac.compare_digest(_digest(token), digest):
            return None
        tokens = self._tokens
        if len(tokens) >= _CACHE_LIMIT:
            tokens.clear()
        tokens[token] = entry
        return caller

    def known(self, token: str) -> Caller | None:
        """The caller behind ``token`` when this worker checked that very token against the
        key record it holds, and that record is still the one in force and within
        ``CACHE_TTL_S``: no regular expression, hash or round trip. None: ask
        :meth:`authenticate` (which decides for every other case, failures included).

        The entry is compared by identity: a record read again, dropped by a revocation
        or by ``forget()`` is another object (or none), so a token is never taken on an
        entry it was not checked against."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        caller = entry[2]  # only entries of live keys are held here: never None
        if caller is None or self._cache.get(caller.key_id) is not entry or time.monotonic() - entry[0] > CACHE_TTL_S:
            return None
        return caller

    def forget(self, key_id: str | None = None) -> None:
        """Drop a key's cached record (a revocation was announced), or every record."""
        if key_id is None:
            self._cache.clear()
            self._tokens.clear()
        else:
            self._cache.pop(key_id, None)

    async def _fetch(self, key_id: str, now: float) -> tuple[float, str | None, Caller | None]:
        raw = await self._redis.hgetall(KEY_PREFIX + key_id)
        entry: tuple[float, str | None, Caller | None]
        record = _decode(raw) if raw else None
        if record is None or record.get("revoked") or record.get("role") not in _ROLES:
            entry = (now, None, None)
        else:
            caller = Caller(
                key_id=key_id,
                role=Role(record["role"]),
                name=record.get("name", ""),
                organisation=record.get("organisation") or record.get("name", ""),
                employers=frozenset(e for e in record.get("employers", "").split(",") if e),
                full_fields=record.get("full_fields") == "1",
            )
            entry = (now, record["digest"], caller)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # a flood of made-up key ids: start over rather than grow
        self._cache[key_id] = entry
        return entry
