"""The permit as a role may see it, built fast: one precomputed spec per field set.

Each field set gets its own Struct type with exactly its fields, in
:class:`PermitView`'s order and with its types, so the JSON is a PermitView's (the
schema's) holding only what the role may see; absent values are None and left out
(``omit_defaults``).

A bulk look-up builds up to 10,000 views per request. :meth:`ViewSpec.found` does it
in one loop whose body is generated for the field set when the spec is made (as
``dataclasses`` generates ``__init__``): plain attribute loads into a positional
constructor, no call per record but the constructors (~0.15 µs a permit, against
~0.4 µs through ``of_record``). :meth:`ViewSpec.of_record` is the readable reference
it is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from operator import attrgetter
from typing import Any, TypeVar, get_type_hints

import msgspec

from verifier.api.auth.roles import permit_fields
from verifier.api.verdicts.schemas import PermitView
from verifier.index.records import PermitRecord

__all__ = ["ViewSpec", "view_spec"]

T = TypeVar("T")

# PermitView fields that are plain attributes of a PermitRecord (cn and card_status are derived).
_RECORD_ATTRIBUTES = frozenset({"pn", "status", "cat", "emp", "vf", "vt", "n", "nat", "dob", "v", "ssn"})


def _view_type(fields: tuple[str, ...]) -> type[msgspec.Struct]:
    hints = get_type_hints(PermitView)
    shown = [name for name in PermitView.__struct_fields__ if name in fields]
    # gc=False: a view holds strings and ints only, so it can be in no cycle; 10,000 of
    # them in a look-up are then no work for the cyclic garbage collector
    return msgspec.defstruct("PermitView", [(name, hints[name], None) for name in shown],
                             omit_defaults=True, gc=False, module=__name__)


# The loop of ViewSpec.found, specialised per field set. {values}: the view's
# constructor arguments. Only the names below and the fields of PermitView occur in it.
_FOUND_LOOP = """
def found(ids, get, employers, view, item):
    found = []
    missing = []
    shown = []
    for identifier in ids:
        record = get(identifier)
        if record is None or (employers is not None and record.emp not in employers):
            missing.append(identifier)
            continue
        cn = status = None
        cards = record.cards
        for card in cards:
            if card.status == "active":
                cn = card.cn
                # the first card with this number decides, as in record.card_status(cn)
                status = "active" if len(cards) == 1 else record.card_status(cn)
                break
        found.append(item(identifier, view({values})))
        shown.append(record.pn)
    return found, missing, shown
"""


class ViewSpec:
    __slots__ = ("names", "fields", "_type", "_getter", "_cn", "_card_status", "_found")

    def __init__(self, fields: tuple[str, ...]) -> None:
        self._type = _view_type(fields)
        order = self._type.__struct_fields__
        self.fields: tuple[str, ...] = order
        """The fields shown, in PermitView's order."""
        self.names = tuple(f for f in order if f in _RECORD_ATTRIBUTES)
        # the plain fields come first in PermitView's order, cn and card_status last
        assert order[:len(self.names)] == self.names, order
        getter = attrgetter(*self.names)
        # attrgetter of one name returns the value itself, not a 1-tuple
        self._getter = getter if len(self.names) > 1 else (lambda record: (getter(record),))
        self._cn = "cn" in fields
        self._card_status = "card_status" in fields
        values = [f"record.{name}" for name in self.names]
        values += ["cn"] if self._cn else []
        values += ["status"] if self._card_status else []
        namespace: dict[str, Any] = {}
        exec(_FOUND_LOOP.format(values=", ".join(values)), namespace)  # names from PermitView only
        self._found = namespace["found"]

    def found(
        self, ids: Sequence[str], get: Callable[[str], PermitRecord | None], employers: Container[str] | None,
        item: Callable[[str, PermitView], T],
    ) -> tuple[list[T], list[str], list[str]]:
        """A bulk look-up's answer for ``ids`` in order: ``item(id, view)`` for each id that
        ``get`` finds (each permit with its active card) and, when ``employers`` is given,
        whose employer is one of them; the ids not found; the permit numbers shown."""
        return self._found(ids, get, employers, self._type, item)  # type: ignore[no-any-return]

    def of_record(self, record: PermitRecord, card_number: str | None = None) -> PermitView:
        """From the index: ``card_number`` names the card shown (a card read, a look-up by
        card number), else the permit's active card."""
        values = self._getter(record)
        if not (self._cn or self._card_status):
            return self._type(*values)  # type: ignore[return-value]
        cn = card_number if card_number is not None else record.cn
        if self._card_status:
            status = record.card_status(cn) if cn is not None else None
            if self._cn:
                return self._type(*values, cn, status)  # type: ignore[return-value]
            return self._type(*values, status)  # type: ignore[return-value]
        return self._type(*values, cn)  # type: ignore[return-value]

    def of_token(self, permit: dict[str, Any], record: PermitRecord | None) -> PermitView:
        """What the token says (its signature held), with the index's status of permit and card."""
        kwargs = {name: permit[name] for name in self.names if name in permit}
        cn = permit.get("cn")
        if self._cn and cn is not None:
            kwargs["cn"] = cn
        if record is not None:
            if "status" in self.names:
                kwargs["status"] = record.status
            if self._card_status and cn is not None:
                kwargs["card_status"] = record.card_status(cn)
        return self._type(**kwargs)  # type: ignore[return-value]


_SPECS: dict[tuple[str, bool], ViewSpec] = {}


def view_spec(role: str, full_fields: bool = False) -> ViewSpec:
    key = (role, full_fields)
    spec = _SPECS.get(key)
    if spec is None:
        spec = _SPECS[key] = ViewSpec(permit_fields(role, full_fields))
    return spec
