"""The audit's hash chain and signed checkpoints: a deleted, reordered or edited record is found and named.

Records are written by the API's own audit writer (AuditLog: files and store), then
exported, tampered with and checked by ``verifier audit verify`` as an operator runs it.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from verifier.api.audit.chain import Chain, ChainVerifier, CheckpointSigner, Link, content_of, genesis
from verifier.api.audit.export import export_audit, exported_form, stored_form
from verifier.api.audit.log import AuditLog
from verifier.cli import main
from verifier.lib.redis_client import async_client


def scans(audit: AuditLog, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        audit.record(key_id="a1b2c3d4e5f6", role="exit_entry", kind="qr", result="VALID", terminal=f"gate-{i % 3}",
                     profile="WP1", permit_number=f"WP31000020250{i:05d}")


def write_audit(store_url: str, audit_dir: Path, batches: list[int], *, checkpoint_each: bool = True) -> None:
    """Each batch of scans flushed by one worker's AuditLog (files in ``audit_dir``), sealed after each."""
    async def run() -> None:
        store = async_client(store_url)
        try:
            audit = AuditLog.open(store, audit_dir)
            start = 0
            for count in batches:
                scans(audit, count, start)
                start += count
                await audit.flush(checkpoint=checkpoint_each)
            await audit.close()
        finally:
            await store.aclose()

    asyncio.run(run())


def export_lines(store_url: str) -> list[dict[str, Any]]:
    async def run() -> str:
        store = async_client(store_url)
        try:
            out = io.StringIO()
            await export_audit(store, out)
            return out.getvalue()
        finally:
            await store.aclose()

    return [orjson.loads(line) for line in asyncio.run(run()).splitlines()]


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    return code, out + err


def write_export(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


@pytest.fixture
def exported(redis_url: str, tmp_path: Path) -> list[dict[str, Any]]:
    write_audit(redis_url, tmp_path / "audit", [40, 30, 30])
    lines = export_lines(redis_url)
    assert sum(1 for line in lines if line["kind"] == "qr") == 100
    return lines


def test_the_chain_of_a_worker_verifies_live_in_an_export_and_in_its_files(
        exported: list[dict[str, Any]], redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kinds = [line["kind"] for line in exported]
    assert kinds.count("checkpoint") == 3  # one per flush asked to seal (the last one also on close)
    code, out = verify(capsys, "--store", redis_url)
    assert code == 0, out
    assert "OK: 1 shards, 103 records" in out
    assert "sealed up to record 102" in out
    code, out = verify(capsys, str(write_export(tmp_path / "export.ndjson", exported)), "--store", redis_url)
    assert code == 0, out
    code, out = verify(capsys, "--files", str(tmp_path / "audit"), "--store", redis_url)
    assert code == 0, out


def tampered(tmp_path: Path, lines: list[dict[str, Any]]) -> str:
    return str(write_export(tmp_path / "tampered.ndjson", lines))


def test_an_edited_record_is_found_and_named(exported: list[dict[str, Any]], redis_url: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    lines = [dict(line) for line in exported]
    lines[10]["result"] = "PERMIT_CANCELLED"
    code, out = verify(capsys, tampered(tmp_path, lines), "--store", redis_url)
    assert code == 1
    shard, seq = lines[10]["id"].rsplit(":", 1)
    assert f"tampered.ndjson:11: shard {shard} record {seq}: its hash does not match its content" in out


def test_a_deleted_record_is_found_and_named(exported: list[dict[str, Any]], redis_url: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    lines = exported[:20] + exported[21:]
    code, out = verify(capsys, tampered(tmp_path, lines), "--store", redis_url)
    assert code == 1
    assert f"tampered.ndjson:21: shard {exported[21]['id'].rsplit(':', 1)[0]} record 22: record 21 is missing" in out


def test_a_reordered_record_is_found_and_named(exported: list[dict[str, Any]], redis_url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    lines = list(exported)
    lines[5], lines[6] = lines[6], lines[5]
    code, out = verify(capsys, tampered(tmp_path, lines), "--store", redis_url)
    assert code == 1
    assert "tampered.ndjson:6: shard" in out and "record 7: record 6 is missing" in out


def test_a_rewritten_tail_is_found_by_the_next_checkpoint(exported: list[dict[str, Any]], redis_url: str,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Someone who can recompute the hashes (and edits record 45, re-hashing everything after it) cannot
    re-sign the checkpoint that sealed the original."""
    records = [stored_form(line) for line in exported]
    shard = records[0]["id"].rsplit(":", 1)[0]
    records[44]["result"] = "PERMIT_CANCELLED"
    head = bytes.fromhex(records[43]["h"])
    for record in records[44:]:
        head = __import__("hashlib").sha256(head + content_of(record)).digest()
        record["h"] = head.hex()
    code, out = verify(capsys, tampered(tmp_path, [exported_form(r) for r in records]), "--store", redis_url)
    assert code == 1
    checkpoint = next(r for r in records[44:] if r["kind"] == "checkpoint")
    assert f"shard {shard} record {checkpoint['id'].rsplit(':', 1)[1]}: a checkpoint sealing record" in out


def test_a_checkpoint_by_an_untrusted_key_is_found(exported: list[dict[str, Any]], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    stranger = tmp_path / "stranger.json"
    stranger.write_bytes(orjson.dumps({"keys": [CheckpointSigner.ephemeral().jwk()]}))
    code, out = verify(capsys, str(write_export(tmp_path / "export.ndjson", exported)), "--keys", str(stranger))
    assert code == 1
    assert "which is not a trusted key" in out


def test_a_chain_carries_on_across_a_worker_restart(redis_url: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    write_audit(redis_url, tmp_path / "audit", [25])
    write_audit(redis_url, tmp_path / "audit", [25], checkpoint_each=False)  # the same slot, taken up again
    lines = export_lines(redis_url)
    assert len({line["id"].rsplit(":", 1)[0] for line in lines}) == 1
    assert [int(line["id"].rsplit(":", 1)[1]) for line in lines] == list(range(1, len(lines) + 1))
    for args in ((), ("--files", str(tmp_path / "audit"))):
        code, out = verify(capsys, *args, "--store", redis_url)
        assert code == 0, out
        assert f"records 1..{len(lines)}" in out


def test_records_deleted_at_the_end_of_the_stream_are_found_against_the_head(
        exported: list[dict[str, Any]], redis_url: str, redis_sync: Any, capsys: pytest.CaptureFixture[str]) -> None:
    last_entry = redis_sync.xrevrange("pv:audit", count=1)[0][0]
    redis_sync.xdel("pv:audit", last_entry)
    code, out = verify(capsys, "--store", redis_url)
    assert code == 1
    assert "the store's heads: shard" in out and "(deleted at the end)" in out


def test_the_verifier_by_itself() -> None:
    """Links and checkpoints without any I/O: what each kind of break reads as."""
    signer = CheckpointSigner.ephemeral()
    chain = Chain(Link.start("0a0b0c0d-w0"))
    lines = chain.extend([{"t": i, "kind": "qr", "pn": f"P{i}"} for i in range(5)])
    lines.append(chain.checkpoint(signer, 99))
    records = [orjson.loads(line) for line in lines]
    assert records[0]["id"] == "0a0b0c0d-w0:1"
    assert bytes.fromhex(records[0]["h"]) == __import__("hashlib").sha256(genesis("0a0b0c0d-w0")
                                                                          + content_of(records[0])).digest()

    def check(rows: list[dict[str, Any]], **kwargs: Any) -> ChainVerifier:
        verifier = ChainVerifier({signer.kid: signer.public_key}, **kwargs)
        for i, row in enumerate(rows):
            verifier.check(row, f"row {i}")
        return verifier

    assert check(records).ok
    assert check(records).shards["0a0b0c0d-w0"].last_checkpoint == 5
    assert not check(records[1:]).ok  # record 1 missing, not a partial export
    assert check(records[2:], partial=True).ok  # a partial export: anchored at its first record
    broken = check([records[0], {**records[1], "pn": "OTHER"}, *records[2:]])
    assert broken.first_break is not None and broken.first_break.seq == 2
    # the next link holds (it hashes over the stated h): one edit, one break
    assert broken.breaks == 1


# --- retention ---------------------------------------------------------------------

def write_two_periods(store_url: str, audit_dir: Path) -> float:
    """40 scans, then (a moment later) 30 more; returns the time between the two."""
    import time

    write_audit(store_url, audit_dir, [40])
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    write_audit(store_url, audit_dir, [30])
    return between


def test_retention_by_age_exports_then_trims_and_the_chain_still_verifies(
        redis_url: str, redis_sync: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from verifier.api.audit.retention import retain

    between = write_two_periods(redis_url, tmp_path / "audit")
    total = len(export_lines(redis_url))

    async def trim(store: Any) -> Any:
        # "now" a day after `between`: what is older than a day is what came before it
        return await retain(store, tmp_path / "archive", max_age_days=1.0, now=between + 86_400)

    from tests.api.test_audit_durability import run

    done = run(trim, redis_url)
    assert done.archive is not None and done.archive.exists()
    archived = [orjson.loads(line) for line in done.archive.read_bytes().splitlines()]
    kept = export_lines(redis_url)
    assert len(archived) == done.records and len(archived) + len(kept) == total
    assert all(parse(line["time"]) < between for line in archived)
    assert all(parse(line["time"]) >= between for line in kept)
    assert sum(line["kind"] == "qr" for line in archived) == 40
    # The live chain now begins where retention cut it; the archive, then the rest, is one chain.
    code, out = verify(capsys, "--store", redis_url)
    assert code == 0, out
    later = write_export(tmp_path / "later.ndjson", kept)
    code, out = verify(capsys, str(done.archive), str(later), "--store", redis_url)
    assert code == 0 and "records 1.." in out, out
    assert run(trim, redis_url).archive is None  # nothing more is that old


def parse(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


def test_retention_by_size_from_the_command_line(redis_url: str, redis_sync: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    write_audit(redis_url, tmp_path / "audit", [200] * 10)  # ten stream entries, about 60 KB
    usage = redis_sync.memory_usage("pv:audit", samples=0)
    budget_mb = usage * 0.5 / 1024 / 1024
    before = len(export_lines(redis_url))
    capsys.readouterr()
    assert main(["audit", "retain", "--archive", str(tmp_path / "archive"), "--max-mb", repr(budget_mb),
                 "--store", redis_url]) == 0
    assert "then trimmed them from the stream" in capsys.readouterr().err
    assert redis_sync.memory_usage("pv:audit", samples=0) <= usage * 0.6
    (archive,) = (tmp_path / "archive").glob("audit-*.ndjson")
    archived = archive.read_bytes().splitlines()
    assert len(archived) + len(export_lines(redis_url)) == before
    code, out = verify(capsys, "--store", redis_url)
    assert code == 0, out
    # no bound: a usage error, nothing trimmed
    assert main(["audit", "retain", "--archive", str(tmp_path / "archive"), "--store", redis_url]) == 2


def test_the_checkpoint_keys_are_served_and_check_the_chain(world: Any, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tests.api.conftest import PERMITS, open_client

    first = open_client(world.settings())
    try:
        for _ in range(3):
            first.post("/v1/verify/qr", json={"qr": world.wp1(PERMITS["valid"]), "terminal": "K"},
                       headers=world.headers("exit_entry"))
    finally:
        first.__exit__(None, None, None)  # a clean stop seals the chain with a checkpoint
    second = open_client(world.settings())
    try:
        served = second.get("/v1/audit-keys")
    finally:
        second.__exit__(None, None, None)
    assert served.status_code == 200
    keys = served.json()["keys"]
    lines = export_lines(world.redis_url)
    kids = {line["kid"] for line in lines if line["kind"] == "checkpoint"}
    assert kids and kids <= {k["kid"] for k in keys}
    assert all("d" not in k for k in keys)  # public keys only
    pinned = tmp_path / "audit-keys.json"
    pinned.write_bytes(orjson.dumps({"keys": keys}))
    code, out = verify(capsys, str(write_export(tmp_path / "export.ndjson", lines)), "--keys", str(pinned))
    assert code == 0, out
