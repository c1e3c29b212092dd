"""Roles: who may call what, and which permit fields each role is shown.

The one table of data minimisation (DESIGN, Callers). Every response that carries
permit data goes through :func:`permit_fields`; a field not listed for a role is
never sent to it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    EXIT_ENTRY = "exit_entry"
    SERVICE_HALL = "service_hall"
    SOCIAL_INSURANCE = "social_insurance"
    PARTNER = "partner"
    ADMIN = "admin"
    ESSC_PLATFORM = "essc_platform"
    """The electronic social security card platform, acting for a holder (verifier/api/holder)."""


ALL_ROLES: Final = frozenset(Role)

# DESIGN, HTTP API: who may use which endpoint.
VERIFIERS: Final = frozenset({Role.EXIT_ENTRY, Role.SERVICE_HALL, Role.SOCIAL_INSURANCE})
"""QR and card verification, card challenges, manual verification."""
PERMIT_READERS: Final = ALL_ROLES - {Role.PARTNER, Role.ESSC_PLATFORM}
"""GET /v1/permits/{pn}. (The e-card platform reads only a signed-in holder's own permit.)"""
BULK_LOOKUP: Final = frozenset({Role.PARTNER, Role.SOCIAL_INSURANCE, Role.ADMIN})
"""POST /v1/permits/lookup."""
ADMINS: Final = frozenset({Role.ADMIN})
"""GET /v1/admin/sync, the terminal registry."""
HOLDER_PLATFORM: Final = frozenset({Role.ESSC_PLATFORM})
"""/v1/holder/*: the e-card platform on a holder's behalf (the holder never holds a key)."""
WEBHOOK_SUBSCRIBERS: Final = frozenset({Role.PARTNER, Role.ADMIN, Role.ESSC_PLATFORM})
"""/v1/webhooks: who may subscribe to notifications (each hears what its key may see); the
platform's webhook settings are HOLDER_PLATFORM's."""

# The permit fields a caller sees, by role. "status" and "card_status" come from the
# index; the others are the permit's data (the token's, once its version matched the
# index, or the index record's).
_STATUS_FIELDS: Final = ("pn", "status", "cat", "emp", "vf", "vt")
PERMIT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    # residence permits: identity and permit, the card read; no social security number
    Role.EXIT_ENTRY: (*_STATUS_FIELDS, "n", "nat", "dob", "v", "cn", "card_status"),
    # "one card" services: identity, permit, card and social security number
    Role.SERVICE_HALL: (*_STATUS_FIELDS, "n", "nat", "dob", "v", "ssn", "cn", "card_status"),
    Role.SOCIAL_INSURANCE: (*_STATUS_FIELDS, "n", "nat", "dob", "v", "ssn", "cn", "card_status"),
    # partners (employers' HR platforms): status fields only, unless the key was
    # granted full fields (PARTNER_FULL_FIELDS); always only their own employers' permits
    Role.PARTNER: _STATUS_FIELDS,
    Role.ADMIN: (*_STATUS_FIELDS, "n", "nat", "dob", "v", "ssn", "cn", "card_status"),
    # the holder's own permit, read through the e-card platform: every field the index has
    # about them (the holder token limits it to that one permit)
    Role.ESSC_PLATFORM: (*_STATUS_FIELDS, "n", "nat", "dob", "v", "ssn", "cn", "card_status"),
}
PARTNER_FULL_FIELDS: Final = (*_STATUS_FIELDS, "n", "nat", "dob", "ssn", "cn", "card_status")
"""A partner key created with ``full_fields=True`` (its employers' own staff data)."""


def permit_fields(role: str, full_fields: bool = False) -> tuple[str, ...]:
    if role == Role.PARTNER and full_fields:
        return PARTNER_FULL_FIELDS
    return PERMIT_FIELDS[role]
