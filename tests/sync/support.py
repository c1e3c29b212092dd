"""Helpers of the sync suite: the job in a thread or in a process, waiting, comparing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from verifier.index.errors import IndexNotReady, IndexUnavailable
from verifier.index.reader import SyncPermitIndex
from verifier.index.writer import IndexWriter
from verifier.lib.settings import Settings
from verifier.sync.job import SyncJob
from verifier.upstream.simulator import Upstream

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]

# Fast settings for tests: short lock expiry so that takeovers happen within ~1 s.
TEST_LOCK_TTL_S = 1.0
TEST_POLL_S = 0.05


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (IndexUnavailable, IndexNotReady) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def settings_for(redis_url: str, upstream_url: str, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, upstream_url=upstream_url, sync_lock_ttl_s=TEST_LOCK_TTL_S,
                    sync_poll_interval_s=TEST_POLL_S).with_(**overrides)


@contextlib.contextmanager
def sync_thread(settings: Settings, **options: Any) -> Iterator[SyncJob]:
    """The sync job as a library function in a thread; stopped (cleanly) afterwards."""
    stop = threading.Event()
    job = SyncJob(settings, stop, **options)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            job.run()
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="sync-job", daemon=True)
    thread.start()
    try:
        yield job
    finally:
        stop.set()
        thread.join(30)
        job.redis.close()
    assert not thread.is_alive(), "the sync job did not stop"
    assert not errors, errors


class SyncProcess:
    """``verifier sync`` as a child process (so it can be killed with SIGKILL)."""

    def __init__(self, redis_url: str, upstream_url: str, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        environment = {
            **os.environ,
            "REDIS_URL": redis_url,
            "UPSTREAM_URL": upstream_url,
            "VERIFIER_SYNC_LOCK_TTL_S": str(TEST_LOCK_TTL_S),
            "VERIFIER_SYNC_POLL_INTERVAL_S": str(TEST_POLL_S),
            "VERIFIER_LOG_LEVEL": "INFO",
            **env,
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "verifier", "sync"],
            cwd=REPO, env=environment, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM: a clean stop (releases the lock)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code


def index_records(redis_client: Any) -> dict[str, Any]:
    return {r.pn: r for r in SyncPermitIndex(redis_client).iter_records()}


def caught_up(upstream: Upstream, redis_client: Any) -> bool:
    state = IndexWriter(redis_client).state()
    return state.ready and state.feed_id == upstream.feed_id and state.seq == upstream.seq


def wait_caught_up(upstream: Upstream, redis_client: Any, timeout: float = 30) -> None:
    wait_for(lambda: caught_up(upstream, redis_client), timeout,
             f"the index to reach seq {upstream.seq} of feed {upstream.feed_id}")


def assert_index_equals_upstream(upstream: Upstream, redis_client: Any) -> None:
    """Every permit of the upstream is in the index exactly, and nothing else is; the
    secondary look-ups find every active ssn and card number."""
    expected = {r.pn: r for r in upstream.records()}
    held = index_records(redis_client)
    missing = expected.keys() - held.keys()
    extra = held.keys() - expected.keys()
    differ = [pn for pn in expected.keys() & held.keys() if expected[pn] != held[pn]]
    assert not missing and not extra and not differ, (
        f"{len(missing)} missing, {len(extra)} extra, {len(differ)} differ; e.g. "
        f"{sorted(missing)[:3]} {sorted(extra)[:3]} {[(expected[p], held[p]) for p in differ[:2]]}"
    )
    reader = SyncPermitIndex(redis_client)
    ssns = {r.ssn: r.pn for r in expected.values() if r.ssn}
    found = reader.get_many("ssn", list(ssns))
    assert {ssn: r.pn for ssn, r in found.items()} == ssns
    cards = {c.cn: r.pn for r in expected.values() for c in r.cards}
    found = reader.get_many("cn", list(cards))
    assert {cn: r.pn for cn, r in found.items()} == cards
