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
