"""The terminal registry: the names and places of the scanners and card terminals, per organisation.

A terminal id is what a caller sends as ``terminal`` with each check (``GATE-7``);
callers choose their own, so two organisations may both have a ``GATE-7``: a terminal is
registered under an organisation (the one its API keys were made for), and an audit
record's terminal is resolved through the record's key -> organisation -> terminal.
Registered by operators (``verifier terminals register``, ``POST /v1/admin/terminals``),
read by "who verified me" (verifier/api/holder) to show a holder "Desk 12, Pudong
airport T2" rather than a code. Registering an id again renames or moves it: holders
then see the current name for earlier checks too (names are resolved when read).

Redis layout, beside the API keys (verifier/api/auth/keys.py; data of record, not a
cache): ``pv:apikeys:terminals:<organisation>`` a hash, terminal id -> JSON
``{"name", "place", "registered"}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

import msgspec

from verifier.api.auth.keys import ORGANISATION_SET, ApiKeyError, check_organisation
from verifier.lib.redis_client import AsyncRedisClient

__all__ = ["TERMINALS_PREFIX", "Terminal", "TerminalError", "UnknownOrganisation", "list_terminals", "register_terminal", "terminal_names"]

TERMINALS_PREFIX = "pv:apikeys:terminals:"
_TERMINAL_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
"""The ``terminal`` of every request schema (verifier/api/openapi.py)."""


class TerminalError(ValueError):
    """A terminal that cannot be registered as asked."""


class UnknownOrganisation(TerminalError):
    """No API key was made for that organisation (a typo must not make a new one)."""


class Terminal(msgspec.Struct, frozen=True):
    """A registered terminal."""

    organisation: str
    """The organisation whose API keys send this terminal id."""
    id: str
    """The id its checks carry (``terminal`` in the requests)."""
    name: str
    """What a holder is shown: "Desk 12"."""
    place: str
    """Where it stands: "Shanghai Pudong airport, T2 arrivals"."""
    registered: float = 0.0
    """When it was registered or last renamed (epoch s)."""


class _Stored(msgspec.Struct, frozen=True):
    name: str
    place: str
    registered: float = 0.0


_decode = msgspec.json.Decoder(_Stored).decode


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise TerminalError(f"a terminal's {what} is 1 to 200 printable characters")
    return value


async def register_terminal(redis: AsyncRedisClient, organisation: str, terminal_id: str, name: str, place: str) -> tuple[Terminal, bool]:
    """Register (or rename) a terminal; returns it and whether it is new.
    The organisation must be one that API keys were made for."""
    try:
        organisation = check_organisation(organisation)
    except ApiKeyError as exc:
        raise TerminalError(str(exc)) from None
    if not _TERMINAL_ID.fullmatch(terminal_id):
        raise TerminalError("a terminal id is 1 to 64 characters of A-Z, a-z, 0-9 and . _ : @ -")
    terminal = Terminal(organisation, terminal_id, _text(name, "name"), _text(place, "place"), time.time())
    if not await redis.sismember(ORGANISATION_SET, organisation):
        raise UnknownOrganisation(f"no API key was made for the organisation {organisation!r}")
    stored = msgspec.json.encode(_Stored(terminal.name, terminal.place, terminal.registered))
    added = await redis.hset(TERMINALS_PREFIX + organisation, terminal_id, stored)
    return terminal, bool(added)


async def list_terminals(redis: AsyncRedisClient) -> list[Terminal]:
    """Every registered terminal, by organisation and id."""
    organisations = sorted(o.decode() if isinstance(o, bytes) else o for o in await redis.smembers(ORGANISATION_SET))
    if not organisations:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for organisation in organisations:
            pipe.hgetall(TERMINALS_PREFIX + organisation)
        replies = await pipe.execute()
    terminals = []
    for organisation, entries in zip(organisations, replies):
        for terminal_id, raw in sorted(entries.items()):
            stored = _decode(raw)
            tid = terminal_id.decode() if isinstance(terminal_id, bytes) else terminal_id
            terminals.append(Terminal(organisation, tid, stored.name, stored.place, stored.registered))
    return terminals


async def terminal_names(redis: AsyncRedisClient, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """``(organisation, terminal id) -> (name, place)`` for those registered."""
    pairs = [pair for pair in dict.fromkeys(wanted) if pair[1]]
    if not pairs:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for organisation, terminal_id in pairs:
            pipe.hget(TERMINALS_PREFIX + organisation, terminal_id)
        replies = await pipe.execute()
    found = {}
    for pair, raw in zip(pairs, replies):
        if raw is not None:
            stored = _decode(raw)
            found[pair] = (stored.name, stored.place)
    return found
