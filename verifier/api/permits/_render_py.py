"""Stored permit records (msgpack) to a look-up's JSON: the readable twin.

Each record is decoded into a :class:`PermitRecord` (``verifier.index.stored``: a
legacy value by msgspec, a compact one, whose permit number is the id asked, by the
stored codec), the role's views are built by :meth:`ViewSpec.found` and encoded by
msgspec: the reference that the compiled twin (``_render_c.pyx``) must equal byte
for byte.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

import msgspec

from verifier.api.permits._render_errors import RecordError
from verifier.api.permits.schemas import FIELD_ORDER, Found
from verifier.api.verdicts.views import ViewSpec
from verifier.index.records import PermitRecord
from verifier.index.stored import StoredRecordError, decode_stored

__all__ = ["FIELD_ORDER", "field_mask", "render_found"]

_encode = msgspec.json.Encoder().encode
_specs: dict[tuple[str, ...], ViewSpec] = {}


def field_mask(fields: Sequence[str]) -> int:
    """The mask of a field set (names of PermitView's fields)."""
    mask = 0
    for name in fields:
        if name not in FIELD_ORDER:
            raise ValueError(f"not a field of PermitView: {name!r}")
        mask |= 1 << FIELD_ORDER.index(name)
    return mask


def render_found(
    ids: list[str], values: list[bytes | None], fields: tuple[str, ...], employers: Container[str] | None
) -> tuple[bytes, list[str], list[str]]:
    """A bulk look-up by permit number, from the stored records to JSON.

    ``values[i]``: the stored record of ``ids[i]`` (None: no such permit), in either
    layout (a compact value has no permit number: it is ``ids[i]``); ``fields``:
    the role's field set; ``employers``: a partner key's employers (their permits
    only), or None. Returns the ``found`` items as JSON without the brackets (the
    ``Found`` objects, comma-separated, in the order of ``ids``), the ids missing
    (unknown, or another employer's), and the permit numbers shown. Raises
    :class:`RecordError` for a record that ``decode_stored`` refuses.
    """
    if len(ids) != len(values):
        raise ValueError("ids and values differ in length")
    field_mask(fields)
    spec = _specs.get(fields)
    if spec is None:
        spec = _specs[fields] = ViewSpec(fields)
    records: dict[str, PermitRecord] = {}
    for identifier, raw in zip(ids, values):
        if raw is not None:
            try:
                records[identifier] = decode_stored(identifier, raw)
            except StoredRecordError as exc:
                raise RecordError(f"undecodable permit record: {exc}") from None
    found, missing, shown = spec.found(ids, records.get, employers, Found)
    return _encode(found)[1:-1], missing, shown
