"""Fuzz the stored permit record's decoders (``verifier.index.stored``, both twins) and
the look-up renderer that reads the same bytes (``verifier.api.permits``, both twins)
(atheris / libFuzzer).

Run (from the project root; the compiled twins must be built)::

    python3 fuzz/fuzz_stored.py -runs=200000

A stored value comes from Redis, which the index shares with its operators (a restore,
a repair by hand, a bit flipped on disk): the readers must turn any bytes into a
record or a specific error, never a crash, a hang or a wrong record. Each input is a
value in one of several ways (raw bytes; a valid compact value, or a value of
msgspec's older layout, of a record built from fuzz data, with bytes edited,
truncated or appended), and a permit number. It asserts:

- nothing but a ``PermitRecord`` or a ``StoredRecordError`` comes out of either
  twin's ``decode_stored``, and both twins agree (the same record, or both refuse);
- a record decoded from a compact value has the permit number it was given, and
  encodes back (either twin, byte for byte the same) to a value that decodes to it;
- a value decoded from an unedited encoding is the record encoded;
- the renderers (``render_found``) of both twins give the same JSON for the value, or
  both refuse it with ``RecordError`` exactly when the decoders refuse it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402

import _common as common  # noqa: E402

with atheris.instrument_imports():
    from verifier.api.permits import _render_c as render_c  # noqa: E402
    from verifier.api.permits import _render_py as render_py  # noqa: E402
    from verifier.api.permits._render_errors import RecordError  # noqa: E402
    from verifier.index import _stored_c as stored_c  # noqa: E402
    from verifier.index import _stored_py as stored_py  # noqa: E402
    from verifier.index._stored_errors import StoredRecordError  # noqa: E402
    from verifier.index.records import Card, PermitRecord, encode_record  # noqa: E402

FIELDS = ("pn", "n", "nat", "dob", "cat", "emp", "vf", "vt", "ssn", "cards", "status")
DATES = ("1985-03-04", "2000-02-29", "1900-02-28", "9999-12-31", "0001-01-01", "1985-02-30", "1985-2-3", "", "x")


def make_record(fdp: atheris.FuzzedDataProvider) -> PermitRecord:
    def text(limit: int = 24) -> str:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, limit))

    def date() -> str:
        return DATES[fdp.ConsumeIntInRange(0, len(DATES) - 1)] if fdp.ConsumeBool() else text(12)

    cards = tuple(Card(text(18), ("active", "lost", "replaced")[fdp.ConsumeIntInRange(0, 2)])
                  for _ in range(fdp.ConsumeIntInRange(0, 3)))
    return PermitRecord(
        pn=text(20), n=text(40), nat=text(4), dob=date(), cat="ABC"[fdp.ConsumeIntInRange(0, 2)],  # type: ignore[arg-type]
        emp=text(20), vf=date(), vt=date(), v=fdp.ConsumeIntInRange(0, 2**64 - 1),
        status="cancelled" if fdp.ConsumeBool() else "active",
        ssn=text(20) if fdp.ConsumeBool() else None, cards=cards,
        si=fdp.ConsumeIntInRange(0, 2**63) if fdp.ConsumeBool() else None,
        ci=fdp.ConsumeIntInRange(0, 2**40) if fdp.ConsumeBool() else None,
    )


def make_value(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, PermitRecord | None]:
    """The value, and the record it encodes when it was left as encoded."""
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)), None
    record = make_record(fdp)
    try:
        value = stored_c.encode_stored(record) if mode != 3 else encode_record(record)
    except StoredRecordError:
        return fdp.ConsumeBytes(64), None
    if mode == 1 or not value:
        return value, record
    edited = bytearray(value)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        what = fdp.ConsumeIntInRange(0, 2)
        if what == 0 and edited:
            edited[fdp.ConsumeIntInRange(0, len(edited) - 1)] = fdp.ConsumeIntInRange(0, 255)
        elif what == 1:
            del edited[fdp.ConsumeIntInRange(0, len(edited)):]
        else:
            edited += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
    return bytes(edited), None


def decode(twin: object, pn: str, value: bytes) -> PermitRecord | StoredRecordError:
    try:
        record = twin.decode_stored(pn, value)  # type: ignore[attr-defined]
    except StoredRecordError as error:
        return error
    assert type(record) is PermitRecord, type(record)
    return record


def render(twin: object, pn: str, value: bytes) -> bytes | None:
    try:
        items, missing, shown = twin.render_found([pn], [value], ("pn", "status", "vt"), None)  # type: ignore[attr-defined]
    except RecordError:
        return None
    assert missing == [] and len(shown) == 1, (missing, shown)
    return items  # type: ignore[no-any-return]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    pn = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(1, 20))
    value, encoded = make_value(fdp)
    c, py = decode(stored_c, pn, value), decode(stored_py, pn, value)
    if isinstance(c, StoredRecordError) or isinstance(py, StoredRecordError):
        assert isinstance(c, StoredRecordError) and isinstance(py, StoredRecordError), (value, c, py)
    else:
        assert c == py, (value, c, py)
        if stored_c.is_compact(value):
            assert c.pn == pn, (c.pn, pn)
        if encoded is not None:
            assert c == (encoded if not stored_c.is_compact(value) else PermitRecord(
                **{**{f: getattr(encoded, f) for f in encoded.__struct_fields__}, "pn": pn})), (c, encoded)
        again = stored_c.encode_stored(c)
        assert again == stored_py.encode_stored(c), c
        assert stored_c.decode_stored(c.pn, again) == c, c
    rendered_c, rendered_py = render(render_c, pn, value), render(render_py, pn, value)
    assert rendered_c == rendered_py, (value, rendered_c, rendered_py)
    assert (rendered_c is None) == isinstance(c, StoredRecordError), (value, rendered_c, c)


if __name__ == "__main__":
    common.fuzz_main(test_one_input)
