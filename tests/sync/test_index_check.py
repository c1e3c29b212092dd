"""``verifier index check``: identical while both sides move; real differences found."""

from __future__ import annotations

import msgspec

from verifier.cli import main
from verifier.index.records import encode_record
from verifier.index.writer import IndexWriter
from verifier.sync.check import check_index
from verifier.sync.upstream_client import UpstreamClient

from .support import settings_for, sync_thread, wait_caught_up


def _check(server_url: str, redis_url: str, *extra: str) -> int:
    return main(["index", "check", "--upstream", server_url, "--redis", redis_url, *extra])


def test_identical_while_the_upstream_keeps_changing(sim, redis_url, redis_sync, capsys) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url)):
        wait_caught_up(upstream, redis_sync)
        client.post("/admin/event-rate", json={"rate": 300}).raise_for_status()
        try:
            for _ in range(2):
                assert _check(server.url, redis_url, "--json") == 0
                report = msgspec.json.decode(capsys.readouterr().out)
                assert report["identical"] and report["differences"] == []
                assert report["index_cursor_before"] >= report["snapshot_seq"]
        finally:
            client.post("/admin/event-rate", json={"rate": 0}).raise_for_status()


def test_records_newer_than_the_snapshot_are_explained_by_the_feed(sim, redis_url, redis_sync) -> None:
    """The index moves past the snapshot's sequence before it is read: every newer
    record must be matched to the feed's events, and nothing reported."""
    upstream, server, client = sim
    settings = settings_for(redis_url, server.url)
    with sync_thread(settings):
        wait_caught_up(upstream, redis_sync)
    upstream.random_events(500)  # the snapshot will be at 500; the index is at 0
    started: list = []

    def catch_up_past_the_snapshot(delay: float) -> None:
        if not started:  # first wait of the check: move both sides past S
            upstream.random_events(400)
            started.append(sync_thread(settings))
            started[0].__enter__()
            wait_caught_up(upstream, redis_sync)

    try:
        with UpstreamClient(server.url) as upstream_client:
            report = check_index(redis_sync, upstream_client, wait_s=30, sleep=catch_up_past_the_snapshot)
    finally:
        if started:
            started[0].__exit__(None, None, None)
    assert report.snapshot_seq == 500 and report.index_cursor_before == 900
    assert report.identical, report.differences
    assert report.explained_by_feed > 100  # permits changed after S, confirmed by the feed
    assert report.index_permits == upstream.count > report.upstream_permits  # issued after S


def test_differences_are_found_and_listed(sim, redis_url, redis_sync, capsys) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url)):
        upstream.random_events(300)
        wait_caught_up(upstream, redis_sync)
    state = IndexWriter(redis_sync).state()
    prefix = IndexWriter(redis_sync).keys.record_prefix(state.generation)
    records = list(upstream.records())
    changed, newer, dropped = records[10], records[20], records[30]
    # A record with a wrong employer; one with a version the feed never made; one gone;
    # one the upstream never had.
    redis_sync.set(prefix + changed.pn.encode(), encode_record(msgspec.structs.replace(changed, emp="9" * 18)))
    redis_sync.set(prefix + newer.pn.encode(), encode_record(msgspec.structs.replace(newer, v=newer.v + 1)))
    redis_sync.delete(prefix + dropped.pn.encode())
    ghost = msgspec.structs.replace(records[40], pn="WP9900002020999999")
    redis_sync.set(prefix + ghost.pn.encode(), encode_record(ghost))

    assert _check(server.url, redis_url) == 1
    out = capsys.readouterr().out
    assert "4 permit(s) differ" in out
    assert f"differs: {changed.pn} upstream v={changed.v} index v={changed.v} (emp)" in out
    assert f"differs: {newer.pn} upstream v={newer.v} index v={newer.v + 1} (v)" in out
    assert f"missing_in_index: {dropped.pn}" in out
    assert f"not_in_upstream: {ghost.pn}" in out


def test_an_index_that_does_not_catch_up_is_not_identical(sim, redis_url, redis_sync, capsys) -> None:
    upstream, server, client = sim
    with sync_thread(settings_for(redis_url, server.url)):
        wait_caught_up(upstream, redis_sync)
    upstream.random_events(50)  # no sync job runs: the index stays behind
    assert _check(server.url, redis_url, "--wait", "0.5") == 1
    assert "did not reach the snapshot's sequence 50" in capsys.readouterr().out
    redis_sync.flushall()
    assert _check(server.url, redis_url, "--wait", "0.5") == 1
    assert "not ready" in capsys.readouterr().out


def test_an_unreachable_upstream_is_an_error_not_an_answer(redis_url, capsys, monkeypatch) -> None:
    assert _check("http://127.0.0.1:9", redis_url) == 2
    assert "could not read the upstream's snapshot" in capsys.readouterr().err
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("UPSTREAM_URL", raising=False)
    assert main(["index", "check"]) == 2
