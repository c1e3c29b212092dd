"""Signed receipts, the audit stream and its export, and what never reaches the logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from typing import Any

import orjson
import pytest

from verifier.api.audit.export import export_audit, parse_since
from verifier.api.audit.log import AUDIT_STREAM
from verifier.api.receipts.signer import verify_receipt
from verifier.api.runtime import Runtime
from verifier.lib.redis_client import async_client
from tests.api.conftest import PERMITS, World, open_client, run_async, wait_until

QR = "/v1/verify/qr"


def scan(client: Any, world: World, text: str, role: str = "exit_entry", **extra: Any) -> dict[str, Any]:
    response = client.post(QR, json={"qr": text, "terminal": "GATE-7", **extra}, headers=world.headers(role))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- receipts --------------------------------------------------------------------

def test_a_receipt_verifies_and_a_tampered_verdict_does_not(client: Any, world: World) -> None:
    verdict = scan(client, world, world.wp1(PERMITS["cancelled"]), receipt=True)
    assert verdict["result"] == "PERMIT_CANCELLED"
    receipt = verdict["receipt"]
    assert receipt["alg"] == "EdDSA"
    keys = client.get("/v1/receipt-keys").json()
    assert [k["kid"] for k in keys["keys"]] == [receipt["kid"]]
    assert verify_receipt(verdict, keys) is True

    assert verify_receipt({**verdict, "result": "VALID", "reasons": []}, keys) is False
    assert verify_receipt({**verdict, "permit": {**verdict["permit"], "n": "SOMEONE ELSE"}}, keys) is False
    assert verify_receipt({**verdict, "checked_at": "2020-01-01T00:00:00.000Z"}, keys) is False
    forged = {**receipt, "signature": receipt["signature"][:-2] + ("AA" if receipt["signature"][-2:] != "AA" else "BA")}
    assert verify_receipt({**verdict, "receipt": forged}, keys) is False
    assert verify_receipt({k: v for k, v in verdict.items() if k != "receipt"}, keys) is False


def test_no_receipt_unless_asked(client: Any, world: World) -> None:
    assert "receipt" not in scan(client, world, world.wp1(PERMITS["valid"]))


def test_batch_verdicts_each_carry_a_receipt(client: Any, world: World) -> None:
    codes = [world.wp1(PERMITS["valid"]), "WP1:bad", world.es1(PERMITS["valid"])]
    response = client.post("/v1/verify/qr/batch", json={"codes": codes, "terminal": "T", "receipt": True},
                           headers=world.headers("exit_entry"))
    keys = client.get("/v1/receipt-keys").json()
    verdicts = response.json()["verdicts"]
    assert [v["result"] for v in verdicts] == ["VALID", "MALFORMED", "VALID"]
    assert all(verify_receipt(v, keys) for v in verdicts)
    assert len({v["receipt"]["digest"] for v in verdicts}) == 3


def test_every_worker_signs_with_the_one_service_key(world: World) -> None:
    first, second = open_client(world.settings()), open_client(world.settings())
    try:
        assert first.get("/v1/receipt-keys").json() == second.get("/v1/receipt-keys").json()
        verdict = scan(second, world, world.wp1(PERMITS["valid"]), receipt=True)
        assert verify_receipt(verdict, first.get("/v1/receipt-keys").json())
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


# --- audit -----------------------------------------------------------------------

def audit_entries(world: World) -> list[dict[str, Any]]:
    """The records of every batch in the stream."""
    return [record for _id, fields in world.redis_sync.xrange(AUDIT_STREAM) for record in orjson.loads(fields[b"r"])]


def test_every_verification_and_lookup_is_audited(client: Any, world: World) -> None:
    scan(client, world, world.wp1(PERMITS["valid"]))
    scan(client, world, world.wp1(PERMITS["cancelled"]), role="service_hall")
    client.get(f"/v1/permits/{PERMITS['valid'].pn}", headers=world.headers("admin"))
    client.post("/v1/permits/lookup", json={"by": "pn", "ids": [PERMITS["valid"].pn, "nope"]},
                headers=world.headers("partner"))
    entries = wait_until(lambda: len(audit_entries(world)) >= 4 and audit_entries(world), timeout_s=3,
                         what="audit records in the stream")
    by_kind = {(e["kind"], e["role"]): e for e in entries}
    qr = by_kind[("qr", "exit_entry")]
    assert (qr["key"], qr["terminal"], qr["pn"], qr["result"], qr["profile"]) == (
        world.key_id["exit_entry"], "GATE-7", PERMITS["valid"].pn, "VALID", "WP1")
    assert by_kind[("qr", "service_hall")]["result"] == "PERMIT_CANCELLED"
    assert by_kind[("permit", "admin")]["pn"] == PERMITS["valid"].pn
    lookup = by_kind[("lookup", "partner")]
    assert (lookup["pn"], lookup["asked"], lookup["missing"]) == (PERMITS["valid"].pn, "2", "1")
    assert all(abs(e["t"] / 1000 - time.time()) < 60 for e in entries)


def test_clean_shutdown_writes_the_buffer(world: World) -> None:
    async def main() -> int:
        redis = async_client(world.redis_url)
        runtime = Runtime(world.settings(), redis)
        await runtime.start()
        # no background flush from here on: only the shutdown may write
        runtime._stopping = True
        for task in runtime._tasks:
            task.cancel()
        await asyncio.wait(runtime._tasks)
        for i in range(250):
            runtime.audit.record(key_id="k", role="exit_entry", kind="qr", result="VALID", permit_number=f"P{i}")
        await redis.delete(AUDIT_STREAM)
        await runtime.stop()
        written = [r for _i, f in await redis.xrange(AUDIT_STREAM) for r in orjson.loads(f[b"r"])]
        await redis.aclose()
        return sum(1 for r in written if r["key"] == "k")

    assert asyncio.run(main()) == 250


def test_export_since_a_time_as_ndjson(client: Any, world: World) -> None:
    scan(client, world, world.wp1(PERMITS["valid"]))
    wait_until(lambda: audit_entries(world), timeout_s=3)
    midpoint = time.time()
    time.sleep(0.01)
    scan(client, world, world.wp1(PERMITS["cancelled"]))
    wait_until(lambda: len(audit_entries(world)) >= 2, timeout_s=3)

    everything, recent = io.StringIO(), io.StringIO()
    assert run_async(world.redis_url, lambda r: export_audit(r, everything, 0)) == 2
    assert run_async(world.redis_url, lambda r: export_audit(r, recent, midpoint)) == 1
    lines = [json.loads(line) for line in recent.getvalue().splitlines()]
    assert [(line["permit_number"], line["result"], line["key_id"]) for line in lines] == [
        (PERMITS["cancelled"].pn, "PERMIT_CANCELLED", world.key_id["exit_entry"])]
    assert lines[0]["time"].endswith("+00:00")


@pytest.mark.parametrize(("text", "epoch"), [("1767225600", 1767225600.0), ("2026-01-01", 1767225600.0),
                                              ("2026-01-01T08:00:00+08:00", 1767225600.0)])
def test_parse_since(text: str, epoch: float) -> None:
    assert parse_since(text) == epoch


def test_no_personal_data_in_the_logs(client: Any, world: World, caplog: pytest.LogCaptureFixture) -> None:
    permit = PERMITS["valid"]
    text = world.wp1(permit)
    with caplog.at_level(logging.DEBUG):
        scan(client, world, text)
        scan(client, world, "WP1:broken")
        client.post("/v1/verify/manual", json={"pn": permit.pn, "dob": permit.dob, "terminal": "D"},
                    headers=world.headers("exit_entry"))
        client.post("/v1/permits/lookup", json={"by": "ssn", "ids": [permit.ssn]}, headers=world.headers("admin"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (text[4:40], permit.pn, permit.n, permit.ssn, permit.dob, world.token["exit_entry"]):
        assert secret not in logged


@pytest.mark.slow  # waits for the worker's 5 s check
def test_the_receipt_key_survives_a_flushed_redis(client: Any, world: World) -> None:
    before = client.get("/v1/receipt-keys").json()
    world.redis_sync.delete("pv:receipt-key")  # what a FLUSHALL does to it
    wait_until(lambda: world.redis_sync.exists("pv:receipt-key"), timeout_s=10, what="the key put back")
    assert client.get("/v1/receipt-keys").json() == before
    other = open_client(world.settings())  # a worker starting now adopts the same key
    try:
        assert other.get("/v1/receipt-keys").json() == before
    finally:
        other.__exit__(None, None, None)


def test_every_503_of_permit_reads_and_lookups_is_audited(client: Any, world: World) -> None:
    pn = PERMITS["valid"].pn
    world.redis_sync.delete(b"{pv}:current")  # the index is gone (a FLUSHALL, an unfinished first load)
    wait_until(lambda: client.get(f"/v1/permits/{pn}", headers=world.headers("admin")).status_code == 503,
               what="the worker to see the index gone")
    answered = {"permit": 0, "lookup": 0}
    for _ in range(3):
        assert client.get(f"/v1/permits/{pn}", headers=world.headers("admin")).status_code == 503
        answered["permit"] += 1
        lookup = client.post("/v1/permits/lookup", json={"by": "ssn", "ids": [PERMITS["valid"].ssn, "nope"]},
                             headers=world.headers("partner"))
        assert lookup.status_code == 503
        answered["lookup"] += 1

    def unavailable() -> list[dict[str, Any]]:
        return [e for e in audit_entries(world) if e["result"] == "STATUS_UNAVAILABLE"]

    wait_until(lambda: sum(e["kind"] == "lookup" for e in unavailable()) >= 3, timeout_s=3,
               what="the 503s' audit records")
    records = unavailable()
    permits = [e for e in records if e["kind"] == "permit"]
    lookups = [e for e in records if e["kind"] == "lookup"]
    assert len(permits) >= answered["permit"] and len(lookups) == answered["lookup"]  # + the waiting loop's
    assert {(e["pn"], e["reason"], e["key"]) for e in permits} == {
        (pn, "status.index_not_ready", world.key_id["admin"])}
    # a look-up showed nothing: its record names no permit (nor the ssn asked), only what was asked
    assert {(e["pn"], e["by"], e["asked"], e["reason"]) for e in lookups} == {("", "ssn", "2", "status.index_not_ready")}
