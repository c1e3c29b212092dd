"""The whole service as separate processes, for the fault trial (issue 11).

:class:`FaultStack` starts, each a process of its own, on free ports of 127.0.0.1:

- the index's Redis (``redis-server``, AOF on, fsync every second: the product's
  setting for the index) and the store of record's Redis (AOF ``appendfsync
  always``), both :class:`~verifier.lib.redis_server.EmbeddedRedis`, so that the
  trial can ``kill -9``, ``SIGSTOP`` and restart them on the same port with their data;
  or, for the failover row, the index on the tests' local Redis Cluster;
- the upstream simulator (``verifier upstream``), and in front of it the fault
  proxy (:mod:`tests.faults.proxy`, a real TCP proxy) through which the sync jobs reach it;
- the sync job (``verifier sync``; two of them, one leading, one standing by, as the
  README's production layout has it);
- the API (``verifier serve --workers 2``);
- the notifier (``verifier notify``), which only has to survive the faults.

Everything here is plain processes and plain HTTP: no part of the service is
imported into the test process except the helpers that write API keys into the store
and read the audit stream back (as ``verifier api-keys`` and ``verifier audit`` do).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from verifier.api.audit.stream import AUDIT_STREAM
from verifier.issuing import SoftwareCard
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis, free_port
from verifier.lib.settings import Settings
from verifier.run.processes import Child, http_ok, wait_until
from verifier.run.samples import pick_permits, tamper_signature
from tests.faults import proxy as fault_proxy

REPO = Path(__file__).resolve().parents[2]
SEED = 11
"""The simulator's seed: its issuer keys and every software card's key derive from it."""

LONG = os.environ.get("FAULTS_LONG", "") not in ("", "0")
"""FAULTS_LONG=1: the same trial with longer phases, more kills and more permits."""


@dataclass(frozen=True)
class Samples:
    """Real codes and a real card of the simulator's permits, with the verdict each must get."""

    valid_pn: str
    cancelled_pn: str
    valid_wp1: str
    cancelled_wp1: str
    tampered_wp1: str
    card_certificate: str
    """base64 of the valid permit's card certificate."""
    card: SoftwareCard
    """The chip of that card (its key derived from the simulator's seed, as the simulator derives it)."""

    def sign(self, challenge_b64: str) -> str:
        return base64.b64encode(self.card.sign_challenge(base64.b64decode(challenge_b64))).decode()


def simulator_card(seed: int, card_number: str) -> SoftwareCard:
    """The simulator's software card of ``card_number``: the same derivation as its issuing desk."""
    secret = hashlib.blake2b(b"simulator-secrets:%d" % seed, digest_size=32).digest()
    return SoftwareCard.derive(hashlib.sha256(b"cards" + secret).digest(), card_number)


class FaultStack:
    """The service's processes; every one can be broken and brought back by the trial."""

    def __init__(self, root: Path, *, permits: int = 2000, staleness_bound_s: float = 8.0,
                 sync_lock_ttl_s: float | None = None, index_url: str = "", sync_jobs: int = 2) -> None:
        self.root = root
        self.logs = root / "logs"
        self.permits = permits
        self.staleness_bound_s = staleness_bound_s
        # The product's lock expiry, or the failover target (2 s) where the default is longer: ten
        # kills behind a 10 s lock would take the trial's whole budget.
        self.sync_lock_ttl_s = sync_lock_ttl_s if sync_lock_ttl_s is not None else min(
            Settings().sync_lock_ttl_s, 2.0)
        self.sync_jobs = sync_jobs
        self.external_index_url = index_url
        self.index: EmbeddedRedis | None = None
        self.store = EmbeddedRedis(root / "store", persist=True, appendfsync="always")
        self.upstream: Child | None = None
        self.upstream_port = free_port()
        self.proxy: Child | None = None
        self.proxy_port = free_port()
        self.control_port = free_port()
        self.syncs: list[Child] = []
        self._sync_serial = 0
        self.api: Child | None = None
        self.api_port = free_port()
        self.notify: Child | None = None
        self.samples: Samples | None = None
        self.stopped: set[int] = set()
        """pids this trial has SIGSTOPped and not yet continued."""

    # -- urls and settings -------------------------------------------------------------

    @property
    def index_url(self) -> str:
        if self.external_index_url:
            return self.external_index_url
        assert self.index is not None
        return self.index.url

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def proxied_upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def settings(self) -> Settings:
        return Settings.from_env(
            redis_url=self.index_url, store_url=self.store.url, upstream_url=self.proxied_upstream_url,
            state_dir=self.root / "state", audit_dir=str(self.root / "audit"), host="127.0.0.1",
            port=self.api_port, workers=2, staleness_bound_s=self.staleness_bound_s,
            rate_limit_per_s=1_000_000.0, rate_limit_burst=2_000_000, sync_lock_ttl_s=self.sync_lock_ttl_s,
            card_bridge_origin="",
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFIER_")
               and k not in ("REDIS_URL", "UPSTREAM_URL")}
        env.update(self.settings().to_env())
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    # -- starting ------------------------------------------------------------------------

    def start(self) -> "FaultStack":
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.external_index_url:
            self.index = EmbeddedRedis(self.root / "index", persist=True)  # AOF, fsync every second
            self.index.start()
        self.store.start()
        self.upstream = Child.verifier("upstream", [
            "upstream", "--host", "127.0.0.1", "--port", str(self.upstream_port), "--permits", str(self.permits),
            "--seed", str(SEED), "--event-rate", "0"], self.logs, self.env()).start()
        wait_until(lambda: http_ok(f"{self.upstream_url}/admin/state"), timeout_s=120, what="the simulator",
                   abort=self.upstream.check_running)
        self.start_proxy()
        for _ in range(self.sync_jobs):
            self.start_sync()
        self.start_api()
        self.notify = Child.verifier("notify", ["notify", "--redis", self.index_url], self.logs, self.env()).start()
        self.wait_ready()
        self.samples = self._mint_samples()
        return self

    def start_proxy(self) -> Child:
        self.proxy = Child("proxy", [sys.executable, "-m", "tests.faults.proxy", "--listen", str(self.proxy_port),
                                     "--target", str(self.upstream_port), "--control", str(self.control_port)],
                           self.logs / "proxy.log", self.env()).start()
        wait_until(lambda: self._port_open(self.control_port), timeout_s=30, what="the fault proxy",
                   abort=self.proxy.check_running)
        return self.proxy

    def start_sync(self) -> Child:
        self._sync_serial += 1
        child = Child.verifier(f"sync-{self._sync_serial}", [
            "sync", "--redis", self.index_url, "--upstream", self.proxied_upstream_url], self.logs, self.env())
        child.log_path = self.logs / "sync.log"  # one log for all of them, in order
        self.syncs.append(child.start())
        return child

    def start_api(self) -> Child:
        self.api = Child.verifier("api", [
            "serve", "--redis", self.index_url, "--store", self.store.url, "--upstream", self.upstream_url,
            "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "2"], self.logs, self.env()).start()
        return self.api

    def ready(self) -> bool:
        return http_ok(f"{self.api_url}/health/ready")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        assert self.api is not None
        wait_until(self.ready, timeout_s=timeout_s, what="the API to report the index ready", interval_s=0.2,
                   abort=self.api.check_running)

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    def _mint_samples(self) -> Samples:
        picked = pick_permits(self.upstream_url)  # also holds them: random events leave them alone
        with httpx.Client(base_url=self.upstream_url, timeout=30.0) as client:
            def mint(pn: str) -> str:
                reply = client.post("/issue/wp1", json={"pn": pn})
                reply.raise_for_status()
                return str(reply.json()["qr"])

            valid, cancelled = mint(picked.valid.pn), mint(picked.cancelled.pn)
            card = client.post("/issue/card", json={"pn": picked.valid.pn})
            card.raise_for_status()
        made = card.json()
        return Samples(valid_pn=picked.valid.pn, cancelled_pn=picked.cancelled.pn, valid_wp1=valid,
                       cancelled_wp1=cancelled, tampered_wp1=tamper_signature(valid),
                       card_certificate=made["certificate"], card=simulator_card(SEED, made["cn"]))

    def victim(self) -> tuple[str, str]:
        """A new active permit and its WP1 code, for a row to cancel during its fault: (pn, code)."""
        picked = pick_permits(self.upstream_url)  # held: no random event touches it but ours
        reply = httpx.post(f"{self.upstream_url}/issue/wp1", json={"pn": picked.valid.pn}, timeout=30.0)
        reply.raise_for_status()
        return picked.valid.pn, str(reply.json()["qr"])

    def cancel(self, pn: str) -> None:
        """The upstream cancels the permit now (an event in its feed)."""
        httpx.post(f"{self.upstream_url}/admin/events", json={"type": "cancel", "pn": pn},
                   timeout=10.0).raise_for_status()

    def index_status(self, pn: str) -> str | None:
        """The permit's status in the index now (None: not there, or the index unreachable)."""
        from verifier.index.reader import SyncPermitIndex

        client = sync_client(self.index_url, socket_timeout=2.0)
        try:
            record = SyncPermitIndex(client).get(pn)
            return record.status if record is not None else None
        except Exception:
            return None
        finally:
            client.close()

    # -- what the trial does to them ----------------------------------------------------

    def proxy_mode(self, mode: str) -> None:
        assert fault_proxy.command(self.control_port, f"mode {mode}") == "ok"

    def proxy_stats(self) -> dict[str, Any]:
        return orjson.loads(fault_proxy.command(self.control_port, "stats"))  # type: ignore[no-any-return]

    def upstream_faults(self, **faults: Any) -> None:
        httpx.post(f"{self.upstream_url}/admin/faults", json=faults, timeout=10.0).raise_for_status()

    def event_rate(self, rate: float) -> None:
        httpx.post(f"{self.upstream_url}/admin/event-rate", json={"rate": rate}, timeout=10.0).raise_for_status()

    def sigstop(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.stopped.add(pid)

    def sigcont(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)
        self.stopped.discard(pid)

    def api_workers(self) -> set[int]:
        """The pids of the API's worker processes (the children of ``verifier serve``)."""
        assert self.api is not None and self.api.pid is not None
        return _children(self.api.pid)

    def live_syncs(self) -> list[Child]:
        self.syncs = [c for c in self.syncs if c.running]
        return self.syncs

    def leader_pid(self) -> int | None:
        """The pid in the sync lock's holder ("<fence>:<host>:<pid>:<random>"), or None."""
        from verifier.index.writer import IndexWriter

        client = sync_client(self.index_url, socket_timeout=2.0)
        try:
            parts = (IndexWriter(client).state().leader or "").split(":")
        except Exception:
            return None
        finally:
            client.close()
        return int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else None

    def heal(self) -> None:
        """Whatever a row left broken comes back (a failed row must not fail the next ones)."""
        for pid in list(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                self.sigcont(pid)
        if self.index is not None and not self.index.running:
            self.index.restart()
        if not self.store.running:
            self.store.restart()
        assert self.upstream is not None
        self.upstream.check_running()  # the trial never kills the simulator itself (the proxy stands for it)
        if self.proxy is None or not self.proxy.running:
            self.start_proxy()
        self.proxy_mode("pass")
        self.upstream_faults(slow_ms=0, error_rate=0.0, truncate_rate=0.0)
        self.event_rate(0)
        while len(self.live_syncs()) < self.sync_jobs:
            self.start_sync()
        if self.api is None or not self.api.running:
            self.start_api()
        if self.notify is not None and not self.notify.running:
            self.notify.start()
        self.wait_ready()

    # -- keys and audit -----------------------------------------------------------------

    def api_key(self, role: str, name: str) -> tuple[str, str]:
        """A new key in the store of record: (key id, token)."""
        from verifier.api.auth.keys import add_api_key
        from verifier.lib.redis_client import async_client

        async def make() -> tuple[str, str]:
            redis = async_client(self.store.url)
            try:
                return await add_api_key(redis, role, name)
            finally:
                await redis.aclose()

        return asyncio.run(make())

    def audit_records(self, key_id: str) -> list[dict[str, Any]]:
        """Every audit record in the store made with ``key_id`` (checkpoints aside)."""
        client = self.store.client(socket_timeout=10)
        try:
            out = []
            for _id, fields in client.xrange(AUDIT_STREAM):
                for record in orjson.loads(fields[b"r"]):
                    if record.get("key") == key_id and record.get("kind") != "checkpoint":
                        out.append(record)
            return out
        finally:
            client.close()

    # -- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        for pid in list(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                self.sigcont(pid)
        for child in [self.api, self.notify, *self.syncs, self.proxy, self.upstream]:
            if child is not None:
                with contextlib.suppress(Exception):
                    child.stop()
        for server in (self.index, self.store):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()

    def log_text(self, name: str) -> str:
        try:
            return (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                try:
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"resource_tracker" not in command:  # multiprocessing's helper is no worker
                    out.add(int(entry.name))
    return out


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
