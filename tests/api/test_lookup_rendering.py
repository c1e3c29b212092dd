"""Bulk look-ups by permit number, rendered from the stored records (render.py), over the API.

The answer must be what the reference views say (``ViewSpec.of_record``), in the
order asked, repeats included; a corrupt stored record is an outage (503), never
"missing"; the audit record names the permits shown.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tests.api.conftest import PERMITS, World, wait_until
from verifier.api.audit.log import AUDIT_STREAM
from verifier.api.verdicts.views import view_spec
from verifier.index.keys import KeyLayout, Pointer

LOOKUP = "/v1/permits/lookup"


def test_the_answer_is_the_reference_views_in_the_order_asked(client: Any, world: World) -> None:
    wanted = [PERMITS["card_replaced"], PERMITS["valid"], PERMITS["no_card"], PERMITS["valid"], PERMITS["card_lost"]]
    ids = [p.pn for p in wanted] + ["WP-NOT-THERE"]
    for role in ("social_insurance", "admin"):
        response = client.post(LOOKUP, json={"by": "pn", "ids": ids}, headers=world.headers(role))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        spec = view_spec(role)
        assert body["found"] == [{"id": p.pn, "permit": msgspec.to_builtins(spec.of_record(p))} for p in wanted]
        assert body["missing"] == ["WP-NOT-THERE"]
        assert set(body) == {"found", "missing", "index_as_of", "lag_s"}


def test_the_audit_record_names_the_permits_shown(client: Any, world: World) -> None:
    ids = [PERMITS["valid"].pn, "WP-NOT-THERE", PERMITS["cancelled"].pn]
    response = client.post(LOOKUP, json={"by": "pn", "ids": ids}, headers=world.headers("social_insurance"))
    assert response.status_code == 200

    def lookup_records() -> list[dict[str, Any]]:
        entries = world.redis_sync.xrange(AUDIT_STREAM)
        records = [r for _id, fields in entries for r in msgspec.json.decode(fields[b"r"])]
        return [r for r in records if r["kind"] == "lookup"]

    (record,) = wait_until(lookup_records, what="the look-up's audit record")
    assert record["pn"] == f"{PERMITS['valid'].pn},{PERMITS['cancelled'].pn}"
    assert (record["asked"], record["missing"], record["result"]) == ("3", "1", "found=2")
    assert record["key"] == world.key_id["social_insurance"]


def test_a_corrupt_record_is_an_outage_not_a_missing_permit(client: Any, world: World) -> None:
    layout = KeyLayout()
    pointer = Pointer.parse(world.redis_sync.get(layout.current))
    assert pointer is not None
    key = layout.record_prefix(pointer.generation) + PERMITS["expired"].pn.encode()
    world.redis_sync.set(key, b"\xc1garbage")
    ids = [PERMITS["valid"].pn, PERMITS["expired"].pn]
    response = client.post(LOOKUP, json={"by": "pn", "ids": ids}, headers=world.headers("admin"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    # the other permits still answer
    response = client.post(LOOKUP, json={"by": "pn", "ids": ids[:1]}, headers=world.headers("admin"))
    assert response.status_code == 200
    assert [f["id"] for f in response.json()["found"]] == ids[:1]
