"""The audit goes out in entries bounded in records and bytes, in pipelines, in order.

Bulk look-ups name up to 10,000 permits per record; one multi-megabyte XADD held
Redis (and every look-up waiting on it) for tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from verifier.api.audit.chain import Chain, Link
from verifier.api.audit.log import AuditLog
from verifier.api.audit.stream import AUDIT_STREAM, BATCH, BATCH_BYTES, PIPELINE_BYTES, pipelines
from verifier.lib.redis_client import BULK_OPTIONS, async_client


def _lookup_record(i: int, permits: int) -> dict[str, Any]:
    return {"t": i, "key": "k", "role": "partner", "terminal": "", "kind": "lookup", "profile": "",
            "pn": ",".join(f"WP{i:08d}{j:08d}" for j in range(permits)), "result": f"found={permits}"}


def test_entries_and_pipelines_are_bounded_and_keep_the_order() -> None:
    chain = Chain(Link.start("00000000-w0"))
    lines = chain.extend([_lookup_record(i, 1000 if i % 4 == 0 else 1) for i in range(2000)])
    numbered = list(zip(range(1, len(lines) + 1), lines))
    grouped = pipelines(numbered)
    assert [item for pipeline in grouped for batch in pipeline for item in batch] == numbered
    for pipeline in grouped:
        for batch in pipeline:
            assert len(batch) <= BATCH
            # a batch is over the bound by at most its last record
            assert sum(len(line) for _n, line in batch[:-1]) <= BATCH_BYTES
        assert sum(len(line) for batch in pipeline[:-1] for _n, line in batch) <= PIPELINE_BYTES + BATCH_BYTES
    small = pipelines(list(enumerate(chain.extend([_lookup_record(i, 1) for i in range(3000)]), 1)))
    assert [len(batch) for pipeline in small for batch in pipeline][0] <= BATCH


def test_a_flush_of_large_records_writes_every_record_once_in_order(redis_url: str) -> None:
    records = [_lookup_record(i, 1000) for i in range(120)]  # ~2.3 MB

    async def main() -> tuple[int, list[Any]]:
        client = async_client(redis_url, BULK_OPTIONS)  # the audit's own client in a worker (verifier/api/runtime.py)
        try:
            audit = AuditLog(client)
            for record in records:
                audit.record(key_id=record["key"], role=record["role"], kind="lookup", result=record["result"],
                             permit_number=record["pn"])
            written = await audit.flush()
            return written, await client.xrange(AUDIT_STREAM)
        finally:
            await client.aclose()

    written, entries = asyncio.run(main())
    assert written == len(records)
    assert len(entries) > 1
    stored = [r for _id, fields in entries for r in orjson.loads(fields[b"r"])]
    assert [r["pn"] for r in stored] == [r["pn"] for r in records]
    assert [int(r["id"].rsplit(":", 1)[1]) for r in stored] == list(range(1, len(records) + 1))
    assert max(len(fields[b"r"]) for _id, fields in entries) <= BATCH_BYTES + len(orjson.dumps(stored[0])) + 2
