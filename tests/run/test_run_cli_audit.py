"""``verifier audit export``: the audit stream as NDJSON, from a time on."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import orjson
import pytest

from verifier.api.audit.log import AuditLog
from verifier.cli import main
from verifier.lib.redis_client import async_client

pytestmark = pytest.mark.integration


def write_records(redis_url: str, batches: list[list[dict[str, str]]]) -> list[float]:
    """Each batch flushed by the API's own audit writer; returns the epoch time before each flush."""
    async def write() -> list[float]:
        redis = async_client(redis_url)
        marks = []
        try:
            for batch in batches:
                # A new millisecond for each batch: stream ids (ms) then tell the batches apart.
                await asyncio.sleep(0.005)
                marks.append(time.time())
                await asyncio.sleep(0.005)
                audit = AuditLog(redis)
                for record in batch:
                    audit.record(**record)
                assert await audit.flush() == len(batch)
            return marks
        finally:
            await redis.aclose()

    return asyncio.run(write())


def export(capsys: pytest.CaptureFixture[str], redis_url: str, *args: str) -> tuple[int, list[dict[str, str]], str]:
    code = main(["audit", "export", "--redis", redis_url, *args])
    out, err = capsys.readouterr()
    return code, [orjson.loads(line) for line in out.splitlines()], err


def test_export_since(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = [{"key_id": "a1b2c3d4e5f6", "role": "exit_entry", "kind": "qr", "result": "VALID",
              "terminal": "gate-1", "profile": "WP1", "permit_number": "WP3100002025000123"}]
    second = [
        {"key_id": "a1b2c3d4e5f6", "role": "exit_entry", "kind": "qr", "result": "PERMIT_CANCELLED",
         "terminal": "gate-2", "profile": "WP1", "permit_number": "WP3100002025000124"},
        {"key_id": "0f0f0f0f0f0f", "role": "partner", "kind": "lookup", "result": "found=1 missing=0",
         "permit_number": "WP3100002025000125"},
    ]
    marks = write_records(redis_url, [first, second])

    code, records, err = export(capsys, redis_url, "--since", "0")
    assert code == 0
    assert "exported 3 audit records" in err
    assert [r["permit_number"] for r in records] == [
        "WP3100002025000123", "WP3100002025000124", "WP3100002025000125"]
    assert records[0] | {"id": "", "time": "", "h": ""} == {
        "id": "", "time": "", "h": "", "key_id": "a1b2c3d4e5f6", "role": "exit_entry", "terminal": "gate-1",
        "kind": "qr", "profile": "WP1", "permit_number": "WP3100002025000123", "result": "VALID"}

    # From the second batch on, as epoch seconds and as an RFC 3339 time.
    since_iso = dt.datetime.fromtimestamp(marks[1], dt.timezone.utc).isoformat()
    for since in (repr(marks[1]), since_iso):
        code, records, _ = export(capsys, redis_url, "--since", since)
        assert code == 0
        assert [r["result"] for r in records] == ["PERMIT_CANCELLED", "found=1 missing=0"], since
    # Up to the second batch: only the first.
    code, records, _ = export(capsys, redis_url, "--since", "0", "--until", repr(marks[1]))
    assert [r["result"] for r in records] == ["VALID"]


def test_export_of_an_empty_stream(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, records, err = export(capsys, redis_url, "--since", "2026-01-01")
    assert (code, records) == (0, [])
    assert "exported 0" in err


def test_bad_since_is_a_usage_error(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, records, err = export(capsys, redis_url, "--since", "last tuesday")
    assert (code, records) == (2, [])
    assert "--since" in err
