"""``verifier serve``: uvicorn with several workers, settings from the environment, clean stops."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.run.conftest import REPO, child_env
from tests.run.procs import alive, descendants, port_open, wait_for
from verifier.api.auth.keys import add_api_key
from verifier.lib.redis_client import async_client, sync_client

pytestmark = pytest.mark.integration

_SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+) with (\d+) worker")


def start_serve(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    output = tmp_path / "serve-output.txt"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "verifier", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )
    return process, output


def served_url(process: subprocess.Popen[bytes], output: Path) -> str:
    wait_for(lambda: _SERVING.search(output.read_text(errors="replace")) is not None, 60, "serve to bind", process)
    url = _SERVING.search(output.read_text())[1]  # type: ignore[index]
    wait_for(lambda: _live(url), 60, f"{url}/health/live", process)
    return url


def _live(url: str) -> bool:
    try:
        return httpx.get(url + "/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def make_key(redis_url: str, role: str) -> str:
    async def add() -> str:
        redis = async_client(redis_url)
        try:
            return (await add_api_key(redis, role, f"serve test {role}"))[1]
        finally:
            await redis.aclose()

    return asyncio.run(add())


def test_serve_runs_workers_with_settings_from_the_environment(tmp_path: Path, redis_url: str) -> None:
    token = make_key(redis_url, "admin")
    env = child_env() | {
        "REDIS_URL": redis_url,
        "VERIFIER_STATE_DIR": str(tmp_path / "state"),  # the audit files
        # Observable in every worker: a limit this low answers 429 within a few requests.
        "VERIFIER_RATE_LIMIT_PER_S": "1",
        "VERIFIER_RATE_LIMIT_BURST": "2",
    }
    process, output = start_serve(tmp_path, ["--workers", "2"], env)
    tree: set[tuple[int, int]] = set()
    try:
        url = served_url(process, output)
        tree = descendants(process.pid)
        workers = [p for p, _ in tree if b"multiprocessing-fork" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, output.read_text()
        statuses = [
            httpx.get(url + "/v1/admin/sync", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code
            for _ in range(8)
        ]
        assert statuses[0] == 200, statuses
        assert 429 in statuses, statuses
        # No index yet (no sync job ran): not ready, and says so rather than failing.
        assert httpx.get(url + "/health/ready", timeout=5).status_code == 503
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, output.read_text()
        wait_for(lambda: not alive(tree), 30, "the workers to exit")
        assert not port_open(url)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_without_redis_url_starts_and_stops_a_private_server(tmp_path: Path) -> None:
    env = child_env()
    env.pop("VERIFIER_STORE_URL", None)
    process, output = start_serve(tmp_path, ["--workers", "1", "--state-dir", str(tmp_path / "state")], env)
    tree: set[tuple[int, int]] = set()
    try:
        url = served_url(process, output)
        tree = descendants(process.pid)
        commands = [Path(f"/proc/{p}/cmdline").read_bytes() for p, _ in tree]
        # Two: the index's, and beside it the store of record's, whose AOF is fsynced on every write.
        assert sum(b"redis-server" in c or b"valkey-server" in c for c in commands) == 2, commands
        redis_url = (tmp_path / "state" / "redis.url").read_text().strip()
        store_url = (tmp_path / "state" / "store.url").read_text().strip()
        assert redis_url != store_url
        assert [appendfsync(u) for u in (redis_url, store_url)] == ["everysec", "always"]
        assert port_open(redis_url) and port_open(store_url)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, output.read_text()
        wait_for(lambda: not alive(tree), 30, "the private servers to exit")
        assert not port_open(url)
        assert not port_open(redis_url) and not port_open(store_url)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def appendfsync(url: str) -> str:
    client = sync_client(url)
    try:
        (raw,) = client.config_get("appendfsync").values()
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    finally:
        client.close()


def test_serve_refuses_zero_workers(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "verifier", "serve", "--workers", "0", "--redis", "redis://127.0.0.1:1/0"],
                          capture_output=True, cwd=REPO, env=child_env(), timeout=60)
    assert done.returncode == 2
    assert b"--workers" in done.stderr
