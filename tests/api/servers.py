"""`verifier serve` in a subprocess, on a free port of 127.0.0.1, stopped (process group) after the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from verifier.lib.redis_server import free_port
from tests.api.conftest import World, wait_until


class Server:
    def __init__(self, world: World, workers: int, log_path: Path, port: int | None = None, log_level: str = "warning",
                 **settings: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **world.settings(**settings).to_env(), "VERIFIER_WORKERS": str(workers)}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "verifier", "serve", "--port", str(self.port), "--log-level", log_level],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.log_path = log_path

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, timeout_s=30, what="the server to be ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()
