"""The sync job's state, for operators."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from verifier.api.auth.terminals import Terminal as RegisteredTerminal
from verifier.api.openapi import Terminal
from verifier.api.verdicts.schemas import IndexAsOf


class SyncOut(msgspec.Struct):
    ready: bool
    """A complete index is live."""
    generation: int | None
    """The live index generation (changes with every full resync)."""
    cursor: int | None
    """The last upstream change-feed sequence applied."""
    index_as_of: IndexAsOf | None
    lag_s: float | None
    """Seconds since the sync job last confirmed the index."""
    count: int | None
    """Permits in the index."""
    last_error: str | None
    """The sync job's last failure (None after it recovered, or when it has not reported)."""
    lag_events: int | None
    """Feed events the index lacked at the sync job's last poll."""
    sync: dict[str, Any] | None
    """What the sync job reports about itself (lag in events, last error, leader), when it has reported;
    its instants (``*_at``) in RFC 3339 UTC, each with its epoch seconds beside it (``*_at_epoch``)."""


# Printable, and more than blanks (verifier/api/auth/terminals.py checks the same).
_NAME = r"^[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*$"


class TerminalRequest(msgspec.Struct, forbid_unknown_fields=True):
    organisation: Annotated[str, Meta(min_length=1, max_length=200, pattern=_NAME)]
    """The organisation whose API keys send this terminal id (as given to `verifier api-keys create`)."""
    id: Terminal
    name: Annotated[str, Meta(min_length=1, max_length=200, pattern=_NAME, description="What holders are shown: 'Desk 12'.")]
    place: Annotated[str, Meta(min_length=1, max_length=200, pattern=_NAME, description="Where it stands.")]


class TerminalsOut(msgspec.Struct):
    terminals: list[RegisteredTerminal]
