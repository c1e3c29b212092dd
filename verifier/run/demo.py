"""``verifier demo``: the whole service on one machine, from nothing but pip.

Starts, each as a child process of its own (:mod:`verifier.run.processes`):

1. two private Redis-protocol servers, data under the state folder: the index's, and
   beside it the store of record's (API keys and the audit; AOF fsynced on every
   write), so that losing the index's data costs a resync and nothing else;
2. the upstream simulator with demo permits and a few lifecycle events a second;
3. the sync job, mirroring the simulator into the permit index;
4. the status-list writer (``verifier status-lists run``), publishing the signed lists
   of permits and cards from the index (its signing key is made on its first start);
5. the API (``verifier serve``, 2 workers);
6. the card-reader bridge (``verifier card-bridge``) holding the card of a demo permit
   (the simulator's), for the counter page;
7. the notifier (``verifier notify``) and a tiny webhook receiver (``verifier notify
   receiver``), subscribed to every change with the admin key, that prints each
   delivery (its signatures checked) to its log;

waits until the API says the index is ready, creates one API key per role (printed
once, stored only hashed; the previous demo's keys are revoked), and prints the URL,
the counter page's URL, the keys and ready-to-paste ``curl`` commands with real codes,
and writes a QR image (PNG) of a real code to show to the counter's camera. ``--info FILE`` writes
the same as JSON. A process that dies is started again (:meth:`DemoStack.supervise`:
one line saying which, its exit code and its restart count; a back-off; a limit of
``--restarts`` deaths in a row, past which everything stops as it did before), so the
faults of issue 11 can be tried on the demo itself. Ctrl-C or SIGTERM stops everything
it started, API first and Redis last, and reaps every process. ``--log-format json``
makes every process log JSON lines (verifier.lib.logging).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from verifier.index.status_lists import PATH as STATUS_LISTS_PATH
from verifier.lib.logging import configure_logging, notice
from verifier.lib.redis_server import free_port
from verifier.lib.settings import Settings
from verifier.run.private_redis import INDEX, STORE, private_redis_child, wait_for_url
from verifier.run.processes import Child, ChildFailed, http_ok, wait_until

__all__ = ["DemoOptions", "DemoStack", "run_demo"]

log = logging.getLogger("verifier.demo")

BACKOFF_S = 0.5
"""Wait before the first restart of a child that died; doubled for each death in a row ..."""
BACKOFF_CAP_S = 8.0
"""... up to this."""
STABLE_S = 30.0
"""A child up this long has recovered: its next death starts a new row of restarts."""

DEMO_KEY_PREFIX = "demo "
"""API keys the demo made carry this name prefix, so the next demo can revoke them."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while starting up."""


@dataclass
class DemoOptions:
    state_dir: Path = Path(".state")
    host: str = "127.0.0.1"
    port: int = 8000
    """API port; 0 picks a free one."""
    workers: int = 2
    permits: int = 3000
    seed: int = 1
    event_rate: float = 2.0
    issuer_alg: str = "EdDSA"
    """The simulator's issuer key algorithm: EdDSA (Ed25519) or SM2-SM3 (WIRE-FORMAT 9)."""
    rate_limit_per_s: float | None = None
    """Per-key rate; None keeps the settings' default."""
    info_file: Path | None = None
    ready_timeout_s: float = 180.0
    redis_url: str = ""
    """An existing Redis to use for the index instead of starting a private one."""
    store_url: str = ""
    """An existing Redis for the store of record; empty: a private one, or ``redis_url``'s when that is given."""
    log_level: str = ""
    """Every process's log level (empty: each one's default)."""
    log_format: str = "text"
    """Every process's log format: text or json (verifier.lib.logging)."""
    max_restarts: int = 5
    """A process that dies is started again up to this many times in a row (0: stop everything instead)."""
    stop_event: threading.Event = field(default_factory=threading.Event)


class DemoStack:
    """Redis, upstream simulator, sync job, status-list writer and API as children; ``stop()`` reaps them all."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.children: list[Child] = []
        self._restart_due: dict[str, float] = {}
        """Children that died, by name: when (monotonic) they are started again."""
        self._streak: dict[str, int] = {}
        """Restarts in a row of each child that did not stay up ``STABLE_S``."""
        self._redis_ports: dict[str, int] = {}
        """The private Redis servers' ports: a restart keeps its port (and its AOF file)."""
        self.redis_url = options.redis_url
        self.store_url = options.store_url or options.redis_url
        self.audit_path = self.state_dir / "audit"
        self.upstream_url = ""
        self.api_url = ""
        self.api_port = 0
        self.upstream_port = 0
        self.receiver_url = ""
        self.receiver_secret = self.state_dir / "webhook-receiver.json"
        """The demo subscription's secret and public key, for the receiver (written once known)."""
        self.bridge_port = free_port()
        """The card bridge's port, known before the API starts: the counter page's CSP names it."""

    # -- starting ----------------------------------------------------------------

    def _abort_if_needed(self) -> None:
        if self.options.stop_event.is_set():
            raise Interrupted()
        for child in self.children:
            child.check_running()

    def _start(self, child: Child) -> Child:
        self.children.append(child)
        return child.start()

    def start(self) -> "DemoStack":
        options = self.options
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            redis, url_file = private_redis_child(self.state_dir, self.log_dir, INDEX)
            redis.env = self._env()
            self._start(redis)
            self.redis_url = wait_for_url(url_file, self._abort_if_needed)
            self._redis_ports[INDEX.name] = _port_of(self.redis_url)
        if not self.store_url:
            store, url_file = private_redis_child(self.state_dir, self.log_dir, STORE)
            store.env = self._env()
            self._start(store)
            self.store_url = wait_for_url(url_file, self._abort_if_needed)
            self._redis_ports[STORE.name] = _port_of(self.store_url)

        self.api_port = options.port or free_port()
        url_host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
        self.api_url = f"http://{url_host}:{self.api_port}"
        status_lists = f"{self.api_url}{STATUS_LISTS_PATH}"  # the uri of every code's status claim

        self.upstream_port = free_port()
        self.upstream_url = f"http://127.0.0.1:{self.upstream_port}"
        self._start(Child.verifier("upstream", [
            "upstream", "--host", "127.0.0.1", "--port", str(self.upstream_port),
            "--permits", str(options.permits), "--seed", str(options.seed),
            "--event-rate", str(options.event_rate), "--alg", options.issuer_alg,
            "--status-lists", status_lists, *self._level_flag(),
        ], self.log_dir, self._env()))
        wait_until(lambda: http_ok(f"{self.upstream_url}/admin/state"), timeout_s=120,
                   what="the upstream simulator", abort=self._abort_if_needed)

        settings = Settings.from_env(
            redis_url=self.redis_url, store_url=self.store_url, upstream_url=self.upstream_url,
            state_dir=self.state_dir,
            host=options.host, port=self.api_port, workers=options.workers, status_list_base_url=status_lists,
            rate_limit_per_s=options.rate_limit_per_s,
            rate_limit_burst=int(options.rate_limit_per_s * 2) if options.rate_limit_per_s else None,
            card_bridge_origin=self.bridge_url,
            log_level=options.log_level or None, log_format=options.log_format,
        )
        self.audit_path = settings.audit_path.resolve()
        env = {**os.environ, **settings.to_env()}
        self._start(Child.verifier("sync", ["sync", "--redis", self.redis_url, "--upstream", self.upstream_url],
                                   self.log_dir, env))
        self._start(Child.verifier("status-lists", ["status-lists", "run", "--redis", self.redis_url],
                                   self.log_dir, env))
        self._start(Child.verifier("api", [
            "serve", "--redis", self.redis_url, "--store", self.store_url, "--upstream", self.upstream_url,
            "--host", options.host, "--port", str(self.api_port), "--workers", str(options.workers),
        ], self.log_dir, env))
        self._start_notifications(env)
        wait_until(lambda: http_ok(f"{self.api_url}/health/ready"), timeout_s=options.ready_timeout_s,
                   what="the API to report the index ready", interval_s=0.25, abort=self._abort_if_needed)
        wait_until(lambda: http_ok(f"{status_lists}/permits"), timeout_s=options.ready_timeout_s,
                   what="the Status Lists to be published", interval_s=0.25, abort=self._abort_if_needed)
        return self

    def _start_notifications(self, env: dict[str, str]) -> None:
        """The notifier, and a receiver that checks signatures with the secret it is given later."""
        self.receiver_secret.unlink(missing_ok=True)
        receiver_port = free_port()
        self.receiver_url = f"http://127.0.0.1:{receiver_port}/webhooks"
        self._start(Child.verifier("receiver", [
            "notify", "receiver", "--port", str(receiver_port), "--secret-file", str(self.receiver_secret),
        ], self.log_dir, env))
        self._start(Child.verifier("notify", ["notify", "--redis", self.redis_url], self.log_dir, env))

    @property
    def bridge_url(self) -> str:
        return f"http://127.0.0.1:{self.bridge_port}"

    def start_card_bridge(self, permit_number: str) -> None:
        """The bridge with the simulator's card of ``permit_number``, answering the counter page's origins."""
        port = self.api_url.rsplit(":", 1)[1]
        self._start(Child.verifier("card-bridge", [
            "card-bridge", "--port", str(self.bridge_port), "--simulator", self.upstream_url, "--pn", permit_number,
            "--allow-origin", f"http://127.0.0.1:{port}", "--allow-origin", f"http://localhost:{port}",
            *self._level_flag(),
        ], self.log_dir, self._env()))
        wait_until(lambda: http_ok(f"{self.bridge_url}/v1/status"), timeout_s=30, what="the card bridge",
                   abort=self._abort_if_needed)

    def _env(self) -> dict[str, str]:
        """The environment of a child that gets no settings of its own: the log format and level."""
        env = {**os.environ, "VERIFIER_LOG_FORMAT": self.options.log_format}
        if self.options.log_level:
            env["VERIFIER_LOG_LEVEL"] = self.options.log_level
        return env

    def _level_flag(self) -> list[str]:
        return ["--log-level", self.options.log_level] if self.options.log_level else []

    # -- running and stopping ----------------------------------------------------

    def check(self) -> None:
        """Raise :class:`ChildFailed` if any child has died."""
        for child in self.children:
            child.check_running()

    def supervise(self) -> None:
        """Start again every child that died (one line each: which, its exit code, the restart count),
        after a back-off that doubles with each death in a row (``BACKOFF_S`` up to ``BACKOFF_CAP_S``);
        a child that stayed up ``STABLE_S`` starts a new row. Raises :class:`ChildFailed` when one died
        more than ``max_restarts`` times in a row (then everything is stopped, as before)."""
        now = time.monotonic()
        for child in self.children:
            if child.running:
                if now - child.started_at >= STABLE_S:
                    self._streak.pop(child.name, None)
                continue
            if child.name in self._restart_due:
                if now >= self._restart_due[child.name]:
                    del self._restart_due[child.name]
                    self._restart(child)
                continue
            code = child.reap_dead()
            streak = self._streak.get(child.name, 0) + 1
            if streak > self.options.max_restarts:
                raise ChildFailed(f"{child.name} exited with code {_exit_text(code)} and was restarted "
                                  f"{child.restarts} time(s), {streak - 1} in a row: giving up; see "
                                  f"{child.log_path}:\n{child.log_tail()}")
            self._streak[child.name] = streak
            delay = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (streak - 1))
            self._restart_due[child.name] = time.monotonic() + delay
            notice(log, f"verifier demo: {child.name} exited with code {_exit_text(code)}; restarting it in "
                   f"{delay:.1f} s (restart {child.restarts + 1}, {streak} of {self.options.max_restarts} in a row)",
                   child=child.name, exit_code=code, restarts=child.restarts + 1)

    def _restart(self, child: Child) -> None:
        if child.name in self._redis_ports:  # the same port: the others know its URL, its AOF is named after it
            fresh, _url_file = private_redis_child(self.state_dir, self.log_dir,
                                                   INDEX if child.name == INDEX.name else STORE,
                                                   port=self._redis_ports[child.name])
            child.argv = fresh.argv
        child.restarts += 1
        child.start()

    @property
    def restarts(self) -> dict[str, int]:
        return {c.name: c.restarts for c in self.children if c.restarts}

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.pid is not None}

    def stop(self) -> None:
        """API first (it flushes audit records to the store), then sync, upstream, the Redis servers last."""
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()

    def __enter__(self) -> "DemoStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- API keys -------------------------------------------------------------------------


def create_demo_keys(store_url: str, partner_employers: list[str]) -> dict[str, dict[str, str]]:
    """One key per role, named ``demo <role>``, in the store of record; the previous demo's keys are revoked first."""
    from verifier.api.auth.keys import add_api_key, list_api_keys, revoke_api_key
    from verifier.api.auth.roles import Role
    from verifier.lib.redis_client import async_client

    async def make() -> dict[str, dict[str, str]]:
        redis = async_client(store_url)
        try:
            for key in await list_api_keys(redis):
                if key.name.startswith(DEMO_KEY_PREFIX) and key.revoked is None:
                    await revoke_api_key(redis, key.key_id)
            keys = {}
            for role in Role:
                employers = partner_employers if role == Role.PARTNER else ()
                key_id, token = await add_api_key(redis, role.value, DEMO_KEY_PREFIX + role.value, employers)
                keys[role.value] = {"key_id": key_id, "token": token}
            return keys
        finally:
            await redis.aclose()

    return asyncio.run(make())


def subscribe_receiver(stack: DemoStack, admin_token: str) -> dict[str, str]:
    """Subscribe the demo's receiver to every change (admin key) and hand it the secret."""
    answer = httpx.post(f"{stack.api_url}/v1/webhooks", json={
        "url": stack.receiver_url, "events": ["*"], "description": "the demo's receiver"},
        headers={"Authorization": f"Bearer {admin_token}"}, timeout=10.0)
    answer.raise_for_status()
    made = answer.json()
    keys = msgspec.json.encode({"secret": made["secret"], "public_key": made["public_key"]})
    _write_atomically(stack.receiver_secret, keys)
    stack.receiver_secret.chmod(0o600)  # a signing secret: the demo's own, but still
    return {"id": made["id"], "url": stack.receiver_url}


# -- the command ----------------------------------------------------------------------


def _check_samples(api_url: str, tokens: dict[str, str], samples: dict[str, Any]) -> list[str]:
    """Send the WP1 and manual samples once (ES1 codes are single-use: not those); what did not match."""
    problems = []
    with httpx.Client(base_url=api_url, timeout=10.0) as client:
        for name in ("valid", "cancelled", "tampered", "manual"):
            sample = samples[name]
            reply = client.request(sample.method, sample.path, json=sample.body,
                                   headers={"Authorization": f"Bearer {tokens[sample.role]}"})
            result = reply.json().get("result") if reply.status_code == 200 else f"HTTP {reply.status_code}"
            if result not in sample.expect:
                problems.append(f"{name}: expected {' or '.join(sample.expect)}, got {result}")
    return problems


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _exit_text(code: int | None) -> str:
    """``-9 (SIGKILL)`` for a signal, else the code."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _print_banner(info: dict[str, Any], samples: dict[str, Any], problems: list[str]) -> None:
    out = sys.stdout
    out.write("\n=== permit verification service: demo ready ===\n\n")
    out.write(f"API         {info['url']}   (OpenAPI: {info['url']}/schema/swagger)\n")
    out.write(f"counter     {info['counter']}   (the terminal page: sign in with a key below and any terminal id)\n")
    out.write(f"card bridge {info['card_bridge']}   (holds the card of the 'valid' permit: press Read card)\n")
    out.write(f"upstream    {info['upstream']}   (simulator; permits, events, issuing)\n")
    out.write(f"redis       {info['redis']}   (the index: a mirror of the upstream)\n")
    out.write(f"store       {info['store']}   (the store of record: API keys, audit)\n")
    out.write(f"audit files {info['audit_files']}\n")
    out.write(f"logs        {info['logs']}\n\n")
    out.write("API keys (shown once, stored only hashed):\n")
    for role, token in info["keys"].items():
        out.write(f"  {role:<17} {token}\n")
    out.write("\nQR images to show to the counter page's camera (or open on a phone):\n")
    for name, path in info["qr_images"].items():
        out.write(f"  {name:<17} {path}\n")
    out.write("\nTry these:\n")
    for name, sample in samples.items():
        expect = " or ".join(sample.expect) if sample.expect else "found and missing"
        out.write(f"\n# {name}: {sample.note} -> {expect}\n{sample.curl}\n")
    if info.get("card_read_flow"):
        out.write("\n# a card read, as the counter page makes it: a challenge from the API, the demo's card bridge\n"
                  "# (the card of the 'valid' permit) signs it, the verdict from the API -> VALID; paste in one shell:\n")
        out.write("\n".join(info["card_read_flow"]) + "\n")
    if info.get("holder_flow"):
        out.write("\n# holder services: the e-card platform signs the holder in with a fresh ES1 code, reads the\n"
                  "# permit, downloads the notice (notice.pdf) and lists who verified them; paste in one shell:\n")
        out.write("\n".join(info["holder_flow"]) + "\n")
    if problems:
        out.write("\nwarning: the demo's own check of its samples disagreed (events may have changed a permit):\n")
        for line in problems:
            out.write(f"  {line}\n")
    valid = samples.get("valid")
    if valid is not None and valid.body and "qr" in valid.body:
        offline = shlex.quote(str(Path(info["logs"]).parent / "offline"))
        out.write("\n# offline: fetch the trust list and the Status Lists once, then verify with no network\n")
        out.write(f"verifier offline fetch --from {info['url']} --dir {offline}\n")
        out.write(f"verifier offline verify --dir {offline} {shlex.quote(valid.body['qr'])}\n")
    webhook = info.get("webhook")
    if webhook:
        out.write(f"\n# notifications: every change is delivered (signed, Standard Webhooks) to the demo's receiver\n"
                  f"#   {webhook['url']} (subscription {webhook['id']}); watch them arrive:\n"
                  f"tail -f {info['logs']}/receiver.log\n"
                  f"# subscribe your own URL (a partner hears of its employers' permits only):\n"
                  f"curl -s -X POST {info['url']}/v1/webhooks -H 'Authorization: Bearer {info['keys']['partner']}' "
                  f"-H 'Content-Type: application/json' -d '{{\"url\": \"http://127.0.0.1:9000/hook\", "
                  f"\"events\": [\"*\"]}}'\n")
    out.write("\nCtrl-C stops everything.\n")
    out.flush()


def run_demo(options: DemoOptions) -> int:
    from verifier.run.samples import (
        build_samples, card_read_flow, curl_command, holder_flow, pick_permits, write_qr_images,
    )

    def on_signal(signum: int, frame: object) -> None:
        options.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    configure_logging(options.log_level or "INFO", options.log_format)
    stack = DemoStack(options)
    started = time.monotonic()
    try:
        print(f"verifier demo: starting Redis, the upstream simulator ({options.permits} permits), "
              f"the sync job, the status-list writer and the API; logs in {stack.log_dir}", flush=True)
        with stack:
            picked = pick_permits(stack.upstream_url)
            keys = create_demo_keys(stack.store_url, [picked.valid.emp])
            tokens = {role: k["token"] for role, k in keys.items()}
            samples = build_samples(stack.upstream_url, picked)
            for sample in samples.values():
                sample.curl = curl_command(stack.api_url, tokens[sample.role], sample)
            problems = _check_samples(stack.api_url, tokens, samples)
            stack.start_card_bridge(picked.valid.pn)
            qr_images = write_qr_images(stack.state_dir / "samples", samples)
            webhook = subscribe_receiver(stack, tokens["admin"])
            info = {
                "url": stack.api_url,
                "counter": stack.api_url + "/counter/",
                "card_bridge": stack.bridge_url,
                "qr_images": {name: str(path) for name, path in qr_images.items()},
                "keys": tokens,
                "key_ids": {role: k["key_id"] for role, k in keys.items()},
                "upstream": stack.upstream_url,
                "redis": stack.redis_url,
                "store": stack.store_url,
                "audit_files": str(stack.audit_path),
                "seed": options.seed,
                "permits": options.permits,
                "samples": {name: msgspec.to_builtins(s) for name, s in samples.items()},
                "holder_flow": holder_flow(stack.api_url, stack.upstream_url, tokens["essc_platform"], picked.valid.pn),
                "card_read_flow": card_read_flow(stack.api_url, stack.bridge_url, tokens["service_hall"]),
                "pids": stack.pids,
                "webhook": webhook,
                "logs": str(stack.log_dir),
                "started_in_s": round(time.monotonic() - started, 1),
            }
            if options.info_file is not None:
                _write_atomically(options.info_file, msgspec.json.format(msgspec.json.encode(info)))
            _print_banner(info, samples, problems)
            while not options.stop_event.wait(0.5):
                if not options.max_restarts:
                    stack.check()
                    continue
                before = stack.restarts
                stack.supervise()
                if stack.restarts != before and options.info_file is not None:
                    # the info file names the processes as they are now (a stale pid may be reused)
                    info["pids"], info["restarts"] = stack.pids, stack.restarts
                    _write_atomically(options.info_file, msgspec.json.format(msgspec.json.encode(info)))
            print("\nverifier demo: stopping ...", flush=True)
        print("verifier demo: stopped.", flush=True)
        return 0
    except Interrupted:
        print("\nverifier demo: interrupted while starting; stopped.", flush=True)
        return 130
    except (ChildFailed, TimeoutError, LookupError, httpx.HTTPError) as exc:
        print(f"verifier demo: {exc}", file=sys.stderr, flush=True)
        for child in stack.children:
            print(f"--- last lines of {child.log_path}\n{child.log_tail()}", file=sys.stderr, flush=True)
        return 1
    finally:
        if options.info_file is not None:
            options.info_file.unlink(missing_ok=True)
