"""The upstream's notice contract: ``GET /notice/{pn}`` (documented in ``verifier.upstream``).

A shape of the upstream interface, like those of the sync job's feed and snapshot, but
the API's (its holder services ask for it) and the simulator's, so it lives here, in
neither: the request path does not import the upstream package (DESIGN, "Which part may
use which"). It can join the rest of the upstream wire contract wherever that lives.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["Notice", "notice_decoder"]


class Notice(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The permit's Notice of Foreigner's Work Permit, as the authoritative system signs it
    (the holder's download; WIRE-FORMAT 1, ``WP1:``)."""

    qr: str
    """The signed ``WP1:`` code printed on the notice."""
    pn: str
    v: int
    """The version of the permit record the code was made from."""
    issued_at: float
    """When the upstream signed it (epoch seconds)."""


notice_decoder: Final = msgspec.json.Decoder(Notice)
