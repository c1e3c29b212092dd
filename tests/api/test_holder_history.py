"""The per-permit index of "who verified me": written with the audit, in the same Lua call
and pipeline; every permit of a bulk look-up gets its entry; capped; expired by age;
paged by cursor. Real Redis, and a real Redis Cluster for the one-slot layout."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.api.audit.history import (
    HISTORY_PREFIX,
    INDEX_CHUNK,
    TRIM_EVERY,
    Cursor,
    CursorError,
    HistoryPolicy,
    history_key,
    read_history,
)
from verifier.api.audit.log import AUDIT_STREAM, AuditLog
from verifier.lib.redis_client import async_client, sync_client

pytestmark = pytest.mark.integration


def _run(url: str, work: Any) -> Any:
    async def main() -> Any:
        client = async_client(url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _record(audit: AuditLog, pn: str, kind: str = "qr", result: str = "VALID", terminal: str = "GATE-1",
            key: str = "a1b2c3d4e5f6", at_ms: int | None = None) -> None:
    audit.record(key_id=key, role="exit_entry", kind=kind, result=result, terminal=terminal, profile="WP1",
                 permit_number=pn)
    if at_ms is not None:
        audit._buffer[-1]["t"] = at_ms  # type: ignore[index]  # a record made at another time


def test_the_index_is_written_with_the_audit(redis_url: str) -> None:
    async def work(redis: Any) -> Any:
        audit = AuditLog(redis)
        _record(audit, "WP1")
        _record(audit, "WP2", kind="card", result="CARD_INVALID")
        _record(audit, "WP1", kind="holder_permit", result="found")  # the holder's own read
        _record(audit, "", kind="qr", result="MALFORMED")  # names no permit
        assert await audit.flush() == 4
        mine, _next = await read_history(redis, "WP1", audit.history, since_ms=0, cursor=None, limit=10)
        theirs, _next = await read_history(redis, "WP2", audit.history, since_ms=0, cursor=None, limit=10)
        return mine, theirs, await redis.xlen(AUDIT_STREAM), await redis.keys(HISTORY_PREFIX + "*")

    mine, theirs, stream_entries, keys = _run(redis_url, work)
    assert stream_entries == 1  # one batch, one entry, one call
    assert [(e.kind, e.result, e.terminal, e.key_id, e.profile) for e in mine] == [
        ("qr", "VALID", "GATE-1", "a1b2c3d4e5f6", "WP1")]
    assert [(e.kind, e.result) for e in theirs] == [("card", "CARD_INVALID")]
    assert sorted(keys) == sorted([history_key("WP1").encode(), history_key("WP2").encode()])


def test_every_permit_of_a_bulk_lookup_gets_an_entry(redis_url: str) -> None:
    permits = [f"WP{n:016d}" for n in range(2 * INDEX_CHUNK + 500)]  # past the chunk size: more calls

    async def work(redis: Any) -> Any:
        audit = AuditLog(redis)
        audit.record(key_id="partner00001", role="partner", kind="lookup", result=f"found={len(permits)}",
                     permit_number=",".join(permits), by="pn", asked=str(len(permits)), missing="0")
        _record(audit, permits[7])
        await audit.flush()
        async with redis.pipeline(transaction=False) as pipe:
            for pn in permits:
                pipe.zcard(history_key(pn))
            counts = await pipe.execute()
        seventh, _ = await read_history(redis, permits[7], audit.history, since_ms=0, cursor=None, limit=10)
        stored = [r for _id, f in await redis.xrange(AUDIT_STREAM) for r in orjson.loads(f[b"r"])]
        return counts, seventh, stored

    counts, seventh, stored = _run(redis_url, work)
    assert counts == [2 if n == 7 else 1 for n in range(len(permits))]
    assert sorted((e.kind, e.result) for e in seventh) == [("lookup", "found"), ("qr", "VALID")]  # same ms
    # the audit record itself is as before: one record naming every permit
    assert [r["kind"] for r in stored] == ["lookup", "qr"]
    assert stored[0]["pn"].split(",") == permits


def test_a_flush_written_twice_is_one_entry(redis_url: str) -> None:
    async def work(redis: Any) -> Any:
        audit = AuditLog(redis)
        _record(audit, "WP1", at_ms=int(time.time() * 1000))
        record = dict(audit._buffer[0])
        await audit.flush()
        audit._buffer.append(record)  # at-least-once: the same record again
        await audit.flush()
        return await redis.zcard(history_key("WP1")), await redis.xlen(AUDIT_STREAM)

    assert _run(redis_url, work) == (1, 2)


def test_entries_past_the_retention_are_never_shown_and_are_trimmed(redis_url: str) -> None:
    policy = HistoryPolicy.of(days=1, cap=100)
    now_ms = int(time.time() * 1000)
    old = now_ms - 2 * 86_400_000 - (now_ms % TRIM_EVERY)  # two days ago, on a trimming write's time

    async def work(redis: Any) -> Any:
        audit = AuditLog(redis, policy)
        _record(audit, "WP1", at_ms=old, terminal="OLD")
        _record(audit, "WP1", at_ms=old + 1, terminal="OLD")
        await audit.flush()
        stored_before = await redis.zcard(history_key("WP1"))
        shown, _ = await read_history(redis, "WP1", policy, since_ms=0, cursor=None, limit=10)
        _record(audit, "WP1", at_ms=now_ms, terminal="NEW")
        await audit.flush()
        ttl = await redis.pttl(history_key("WP1"))
        entries, _ = await read_history(redis, "WP1", policy, since_ms=0, cursor=None, limit=10)
        return stored_before, shown, [e.terminal for e in entries], await redis.zcard(history_key("WP1")), ttl

    stored_before, shown, terminals, stored_after, ttl = _run(redis_url, work)
    assert stored_before >= 1  # the write at `old` was itself a trimming one: it kept nothing older than a day
    assert shown == []
    assert terminals == ["NEW"]
    assert stored_after == 1  # the read trimmed the permit's set exactly
    assert 0 < ttl <= 86_400_000  # a permit nobody checks for the retention loses its index whole


def test_the_cap_keeps_the_newest(redis_url: str) -> None:
    policy = HistoryPolicy.of(days=365, cap=5)
    now_ms = int(time.time() * 1000)
    start = now_ms - 1000 - (now_ms % TRIM_EVERY)

    async def work(redis: Any) -> Any:
        audit = AuditLog(redis, policy)
        for n in range(40):
            _record(audit, "WP1", at_ms=start + n, terminal=f"T{n}")
        await audit.flush()
        stored = await redis.zcard(history_key("WP1"))
        entries, following = await read_history(redis, "WP1", policy, since_ms=0, cursor=None, limit=50)
        return stored, [e.terminal for e in entries], following

    stored, terminals, following = _run(redis_url, work)
    assert stored <= 5 + TRIM_EVERY  # trimmed on one write in TRIM_EVERY
    assert terminals == [f"T{n}" for n in range(39, 34, -1)]
    assert following is None


def test_cursors_page_through_equal_times_without_loss(redis_url: str) -> None:
    policy = HistoryPolicy()
    now_ms = int(time.time() * 1000)

    async def work(redis: Any) -> Any:
        audit = AuditLog(redis, policy)
        for n in range(9):  # three checks in each of three milliseconds
            _record(audit, "WP1", at_ms=now_ms - n // 3, terminal=f"T{n}")
        await audit.flush()
        seen, cursor = [], None
        while True:
            page, cursor = await read_history(redis, "WP1", policy, since_ms=0, cursor=cursor, limit=2)
            seen += page
            if cursor is None:
                return seen

    seen = _run(redis_url, work)
    assert sorted(e.terminal for e in seen) == [f"T{n}" for n in range(9)]
    assert [e.time_ms for e in seen] == sorted((e.time_ms for e in seen), reverse=True)


def test_a_cursor_belongs_to_one_permit() -> None:
    token = Cursor(1_700_000_000_000, 2).encode("WP1")
    assert Cursor.decode(token, "WP1") == Cursor(1_700_000_000_000, 2)
    with pytest.raises(CursorError) as foreign:
        Cursor.decode(token, "WP2")
    assert foreign.value.foreign
    for bad in ("", "!!!", "MS4x", Cursor(5, 0).encode("WP1")[:-2]):
        with pytest.raises(CursorError) as refused:
            Cursor.decode(bad, "WP1")
        assert not refused.value.foreign


@pytest.mark.slow
def test_on_a_cluster_the_index_is_in_the_audits_slot(redis_cluster: Any, redis_cluster_url: str) -> None:
    async def work(redis: Any) -> Any:
        audit = AuditLog(redis)
        audit.record(key_id="partner00001", role="partner", kind="lookup", result="found=1200",
                     permit_number=",".join(f"WP{n:016d}" for n in range(1200)))
        _record(audit, "WP0000000000000003", at_ms=int(time.time() * 1000) + 1)
        assert await audit.flush() == 2
        entries, _ = await read_history(redis, "WP0000000000000003", audit.history, since_ms=0, cursor=None, limit=5)
        return [(e.kind, e.result) for e in entries]

    assert _run(redis_cluster_url, work) == [("qr", "VALID"), ("lookup", "found")]
    assert redis_cluster.key_slot(history_key("WP0000000000000003")) == redis_cluster.key_slot(AUDIT_STREAM)
    client = sync_client(redis_cluster_url)
    try:
        assert client.zcard(history_key("WP0000000000001199")) == 1
    finally:
        client.close()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.urlsafe_b64encode(b).decode()))
def test_any_cursor_text_is_a_cursor_or_a_cursor_error(text: str) -> None:
    # the client's cursor is untrusted input: nothing but CursorError may come of it
    try:
        cursor = Cursor.decode(text, "WP1")
    except CursorError:
        return
    assert cursor.score >= 0 and cursor.skip >= 0
    assert Cursor.decode(cursor.encode("WP1"), "WP1") == cursor
