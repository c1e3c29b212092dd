"""Request and response bodies of permit look-ups and manual verification."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from verifier.api.openapi import Terminal
from verifier.api.verdicts.schemas import IndexAsOf, PermitView

MAX_LOOKUP = 10_000

FIELD_ORDER: tuple[str, ...] = PermitView.__struct_fields__
"""PermitView's fields in its order: field i is bit i of a look-up renderer's field
mask (render.py). Defined here once; the compiled renderer checks its table against it."""
Identifier = Annotated[str, Meta(min_length=1, max_length=64)]


class PermitOut(msgspec.Struct):
    permit: PermitView
    index_as_of: IndexAsOf
    lag_s: float


class LookupRequest(msgspec.Struct, forbid_unknown_fields=True):
    by: Literal["pn", "ssn", "cn"]
    """Permit number, social security number or card number."""
    ids: Annotated[list[Identifier], Meta(min_length=1, max_length=MAX_LOOKUP)]


class Found(msgspec.Struct, gc=False):  # gc=False: strings and a view, never in a cycle
    id: str
    """The identifier as asked."""
    permit: PermitView


class LookupOut(msgspec.Struct):
    found: list[Found]
    """In the order asked."""
    missing: list[str]
    """Identifiers with no permit this key may see (unknown, or another employer's)."""
    index_as_of: IndexAsOf
    lag_s: float


class ManualRequest(msgspec.Struct, forbid_unknown_fields=True):
    pn: Identifier
    """Work permit number, as printed."""
    dob: Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="Date of birth, YYYY-MM-DD.")]
    terminal: Terminal
    receipt: bool = False
