"""The open-model load generator, as a Locust locustfile: a master and workers run one plan.

    python -m loadtests run ...        # starts all of this itself; by hand (loopback):
    python -m locust -f loadtests/generator.py --master --headless --expect-workers 2 -u 2 -r 2 \\
        --lt-plan DIR/plan.json --lt-results DIR/generator-results.json --master-bind-host 127.0.0.1
    python -m locust -f loadtests/generator.py --worker --master-host 127.0.0.1    # twice

**Open model.** Arrivals come at the plan's rate whatever the service answers: a
scheduler greenlet draws the arrival times (Poisson, or evenly spaced with
``arrivals: uniform``), sleeps until each one and hands it to a greenlet of its own,
so a slow answer never delays the next arrival. A request's latency is measured from
the moment it was *meant* to be sent, not from when it went out: time spent waiting
for a free connection or for a late scheduler counts, which corrects coordinated
omission as wrk2 does. The second request of an arrival (a card read's verify after
its challenge) is timed from when it could go, the previous answer. Arrivals beyond
``max_in_flight`` outstanding are counted as failures (``dropped``), never silently
skipped.

**Closed model**, for comparison (phases with ``mode: closed``): ``rate / closed_pace``
users, each sending, waiting for the answer, then pausing until its next slot, as
Locust's ``constant_throughput`` does; late slots are not caught up, so the offered
load falls when the service slows, and latency is timed from the actual send.

**Distributed.** Each worker sends its share (``1/generators``) of every phase's rate.
The master sends the plan and a common start time to the workers at test start; the
workers send one message per phase with their histograms (``histogram.py``),
counts, errors, scheduler lag and their own CPU time; the master writes them all to
``--lt-results`` and quits when every worker has reported every phase. Requests are
also reported to Locust's own statistics (its console and web UI), with the same
intended-time latency.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from geventhttpclient import HTTPClient
from gevent.event import Event
from locust import User, constant, events, task
from locust.env import Environment

from loadtests.histogram import Histogram
from loadtests.scenarios import Data, Scenario, scenario as scenario_named, terminal_ids

PLAN_MESSAGE = "lt_plan"
PHASE_MESSAGE = "lt_phase"
START_LEAD_S = 1.5
"""The common start lies this far after the master's test start: time for the plan to reach every worker."""
MAX_ERROR_KINDS = 20


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--lt-plan", default="", help="the plan (JSON) that python -m loadtests run wrote")
    parser.add_argument("--lt-results", default="", help="where the master writes every worker's phase results")


# -- what one worker records -----------------------------------------------------------


class Failure(Exception):
    """A wrong answer, reported to Locust's statistics as a failure."""


class RequestStats:
    __slots__ = ("count", "errors", "failures", "hist")

    def __init__(self) -> None:
        self.count = 0
        self.hist = Histogram()
        """Latencies of the requests that were sent (a dropped arrival has none)."""
        self.failures = 0
        self.errors: Counter[str] = Counter()

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "hist": self.hist.to_json(), "failures": self.failures,
                "errors": dict(self.errors.most_common(MAX_ERROR_KINDS))}


class PhaseRecord:
    """One worker's account of one phase: only arrivals meant for its steady part count."""

    def __init__(self, phase: dict[str, Any]) -> None:
        self.phase = phase
        self.requests: dict[str, RequestStats] = {}
        self.seconds: dict[int, dict[str, Any]] = {}
        self.lag = Histogram()
        self.arrivals = 0
        self.dropped = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.users = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.drained = Event()
        self.drained.set()

    def record(self, name: str, latency_s: float | None, failure: str | None, steady: bool, second: int) -> None:
        """One request (``latency_s`` None: an arrival dropped unsent), under the second it was meant for."""
        row = self.seconds.get(second)
        if row is None:
            row = self.seconds[second] = {"n": 0, "failures": 0, "hist": Histogram()}
        row["n"] += 1
        if latency_s is not None:
            row["hist"].record(latency_s)
        if failure is not None:
            row["failures"] += 1
        if not steady:
            return
        stats = self.requests.get(name)
        if stats is None:
            stats = self.requests[name] = RequestStats()
        stats.count += 1
        if latency_s is not None:
            stats.hist.record(latency_s)
        if failure is not None:
            stats.failures += 1
            stats.errors[failure[:160]] += 1

    def to_json(self, worker: int, unfinished: int) -> dict[str, Any]:
        return {
            "worker": worker, "phase": self.phase["id"], "arrivals": self.arrivals, "dropped": self.dropped,
            "unfinished": unfinished, "max_in_flight": self.max_in_flight, "users": self.users,
            "lag": self.lag.to_json(), "cpu_s": self.cpu_s, "wall_s": self.wall_s,
            "requests": {name: s.to_json() for name, s in self.requests.items()},
            "seconds": {str(k): {"n": v["n"], "failures": v["failures"], "hist": v["hist"].to_json()}
                        for k, v in self.seconds.items()},
        }


# -- one arrival -----------------------------------------------------------------------


class Arrival:
    """The :class:`~loadtests.scenarios.Turn` of one arrival: sends, times and checks its requests."""

    __slots__ = ("data", "engine", "intended", "keys", "other_terminal", "phase", "rng", "steady", "terminal")

    def __init__(self, engine: "Engine", phase: PhaseRecord, intended: float | None, steady: bool) -> None:
        self.engine = engine
        self.data = engine.data
        self.rng = engine.rng
        self.terminal = engine.terminal
        self.other_terminal = engine.other_terminal
        self.phase = phase
        self.intended = intended
        """Monotonic time this arrival was meant to start (open model); None in the closed model."""
        self.steady = steady
        self.keys: dict[str, str] = {}
        """One key per role for the whole arrival: a card's challenge is answered only to the key that asked."""

    def send(self, name: str, method: str, path: str, body: bytes | None, role: str, check: Any,
             *, token: str | None = None, headers: dict[str, str] | None = None) -> bytes | None:
        engine = self.engine
        sent = time.monotonic()
        # Open model: the first request is timed from its intended start (coordinated
        # omission corrected); a follow-up from when it could go (the previous answer).
        origin = sent if self.intended is None else self.intended
        self.intended = None
        request_headers = {"Content-Type": "application/json"} if body is not None else {}
        bearer = token
        if bearer is None and role and self.data is not None:
            bearer = self.keys.get(role)
            if bearer is None:
                bearer = self.keys[role] = self.data.key(role)
        if bearer:
            request_headers["Authorization"] = f"Bearer {bearer}"
        if headers:
            request_headers.update(headers)
        content = b""
        try:
            reply = engine.client.request(method, path, body=body, headers=request_headers)
            content = reply.read()
            failure = check(reply.status_code, reply.get("content-type") or "", content)
        except Exception as exc:  # noqa: BLE001 - any transport failure is the request's failure
            failure = f"{type(exc).__name__}: {str(exc)[:100]}"
        done = time.monotonic()
        latency = done - origin
        self.phase.record(name, latency, failure, self.steady, int(engine.wall(origin) - engine.t0))
        engine.environment.events.request.fire(
            request_type=method, name=name, response_time=latency * 1000.0, response_length=len(content),
            exception=None if failure is None else Failure(failure), context={},
        )
        return content if failure is None else None


# -- the engine: one per worker ----------------------------------------------------------


class Engine:
    def __init__(self, environment: Environment, plan: dict[str, Any], t0: float, worker: int) -> None:
        self.environment = environment
        self.plan = plan
        self.worker = worker
        self.shares = int(plan["generators"])
        self.t0 = t0
        self.mono_t0 = time.monotonic() + (t0 - time.time())
        self.rng = random.Random(int(plan.get("seed", 1)) * 1009 + worker)
        self.terminal, self.other_terminal = terminal_ids(worker, self.rng)
        data_dir = plan.get("data_dir")
        self.data = Data.load(Path(data_dir), worker, self.shares) if data_dir else None
        keys = self.data.keys if self.data is not None else {}
        self.scenarios: dict[str, Scenario] = {}
        for phase in plan["phases"]:
            self.scenarios.setdefault(phase["scenario"], scenario_named(phase["scenario"], keys))
        host = plan["target"].split("://", 1)[1].split("/", 1)[0]
        hostname, _, port = host.rpartition(":")
        self.client = HTTPClient(hostname or host, int(port or 80), concurrency=int(plan["connections"]),
                                 connection_timeout=float(plan["request_timeout_s"]),
                                 network_timeout=float(plan["request_timeout_s"]))
        self.bad_share = float(plan["bad_share"])
        if self.data is not None:
            self.data.warm()

    def wall(self, mono: float) -> float:
        return self.t0 + (mono - self.mono_t0)

    def at(self, offset_s: float) -> float:
        return self.mono_t0 + offset_s

    def run(self) -> None:
        reporters = []
        for phase in self.plan["phases"]:
            record = PhaseRecord(phase)
            if phase["mode"] == "open":
                self.run_open(phase, record)
            else:
                self.run_closed(phase, record)
            reporters.append(gevent.spawn(self.report, record))
        gevent.joinall(reporters)

    def _start_phase(self, phase: dict[str, Any], record: PhaseRecord) -> tuple[float, float, float, float]:
        start, steady, end = self.at(phase["start"]), self.at(phase["steady_from"]), self.at(phase["end"])
        delay = start - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        return start, steady, end, time.process_time()

    def _end_phase(self, record: PhaseRecord, steady: float, cpu_at_start: float, started: float) -> None:
        # CPU of this process over the phase, against the wall time: a worker near one
        # core is the bottleneck, not the service (the report flags such a step).
        record.cpu_s = time.process_time() - cpu_at_start
        record.wall_s = max(1e-9, time.monotonic() - started)

    def run_open(self, phase: dict[str, Any], record: PhaseRecord) -> None:
        scen = self.scenarios[phase["scenario"]]
        start, steady, end, cpu0 = self._start_phase(phase, record)
        rate = float(phase["rate"]) / self.shares  # this worker's share, in requests/s
        length = end - start
        # Arrivals/s at a moment = requests/s x shape / requests per arrival; Poisson
        # arrivals of a varying rate are drawn by thinning a constant stream of the
        # highest rate (every arrival is at least one request: never above rate x peak).
        ceiling = rate * scen.max_shape()
        poisson = self.plan.get("arrivals", "poisson") == "poisson"
        max_in_flight = int(self.plan["max_in_flight"])
        t = start
        while True:
            if poisson:
                t += self.rng.expovariate(ceiling) if ceiling > 0 else length
            if t >= end:
                break
            at = (t - start) / length
            per_arrival = scen.requests_per_arrival(self.bad_share, at)
            here = rate * scen.shape(at) / per_arrival
            if poisson:
                if self.rng.random() * ceiling > here:
                    continue
            else:
                t += 1.0 / here if here > 0 else length
                if t >= end:
                    break
            delay = t - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            record.lag.record(max(0.0, time.monotonic() - t))
            is_steady = t >= steady
            if is_steady:
                record.arrivals += 1
            if record.in_flight >= max_in_flight:
                if is_steady:
                    record.dropped += 1
                record.record("(dropped arrivals)", None, f"dropped: {max_in_flight} arrivals in flight",
                              is_steady, int(self.wall(t) - self.t0))
                continue
            action = scen.pick(self.rng, self.bad_share, at)
            self._launch(record, Arrival(self, record, t, is_steady), action)
        self._end_phase(record, steady, cpu0, start)

    def _launch(self, record: PhaseRecord, arrival: Arrival, action: Any) -> None:
        record.in_flight += 1
        record.max_in_flight = max(record.max_in_flight, record.in_flight)
        record.drained.clear()

        def run() -> None:
            try:
                self.perform(action, arrival)
            finally:
                record.in_flight -= 1
                if record.in_flight == 0:
                    record.drained.set()

        gevent.spawn(run)

    def perform(self, action: Any, arrival: Arrival) -> None:
        """Run one arrival; a fault of the generator itself is counted as a failure, never lost."""
        try:
            action.run(arrival)
        except Exception as exc:  # noqa: BLE001
            origin = arrival.intended if arrival.intended is not None else time.monotonic()
            arrival.phase.record(f"(generator error in {action.name})", None, f"{type(exc).__name__}: {exc}"[:160],
                                 arrival.steady, int(self.wall(origin) - self.t0))

    def run_closed(self, phase: dict[str, Any], record: PhaseRecord) -> None:
        scen = self.scenarios[phase["scenario"]]
        start, steady, end, cpu0 = self._start_phase(phase, record)
        pace = float(self.plan["closed_pace"])
        users = max(1, round(float(phase["rate"]) / self.shares / pace))
        record.users = users

        def user(index: int) -> None:
            next_t = start + (index / users) / pace  # spread the users' first slots
            while True:
                delay = next_t - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                now = time.monotonic()
                if now >= end:
                    return
                is_steady = now >= steady
                if is_steady:
                    record.arrivals += 1
                action = scen.pick(self.rng, self.bad_share, (now - start) / (end - start))
                record.in_flight += 1
                try:
                    self.perform(action, Arrival(self, record, None, is_steady))
                finally:
                    record.in_flight -= 1
                # Closed loop: the next slot waits for this answer; missed slots are not caught up.
                next_t = max(next_t + action.requests / pace, time.monotonic())

        gevent.joinall([gevent.spawn(user, i) for i in range(users)])
        self._end_phase(record, steady, cpu0, start)

    def report(self, record: PhaseRecord) -> None:
        record.drained.wait(timeout=float(self.plan["drain_s"]))
        self.environment.runner.send_message(PHASE_MESSAGE, record.to_json(self.worker, record.in_flight))


# -- Locust glue -------------------------------------------------------------------------


_plan_arrived = Event()
_plan: dict[str, Any] = {}


@events.init.add_listener
def _register(environment: Environment, **_: Any) -> None:
    from locust.runners import LocalRunner, MasterRunner, WorkerRunner

    runner = environment.runner
    if isinstance(runner, (MasterRunner, LocalRunner)):  # a local run is both master and worker
        results: list[dict[str, Any]] = []
        state: dict[str, Any] = {}

        def on_phase(environment: Environment, msg: Any, **_kw: Any) -> None:
            results.append(msg.data)
            expected = len(state["plan"]["phases"]) * int(state["plan"]["generators"])
            if len(results) >= expected:
                _write_results(environment, state, results)
                gevent.spawn_later(0.2, environment.runner.quit)

        def on_start(environment: Environment, **_kw: Any) -> None:
            options = environment.parsed_options
            state["plan"] = json.loads(Path(options.lt_plan).read_text())
            state["t0"] = time.time() + START_LEAD_S
            state["path"] = options.lt_results
            environment.runner.send_message(PLAN_MESSAGE, {"plan": state["plan"], "t0": state["t0"]})

        def on_quit(environment: Environment, **_kw: Any) -> None:
            if state.get("plan") is not None:
                _write_results(environment, state, results)
            # The run's verdict is the report's (python -m loadtests run), not Locust's failure count.
            environment.process_exit_code = 0 if state.get("complete") else 1

        runner.register_message(PHASE_MESSAGE, on_phase)
        environment.events.test_start.add_listener(on_start)
        environment.events.quitting.add_listener(on_quit)
    if isinstance(runner, (WorkerRunner, LocalRunner)):
        def on_plan(environment: Environment, msg: Any, **_kw: Any) -> None:
            _plan.update(msg.data)
            _plan_arrived.set()

        runner.register_message(PLAN_MESSAGE, on_plan)


def _write_results(environment: Environment, state: dict[str, Any], results: list[dict[str, Any]]) -> None:
    expected = len(state["plan"]["phases"]) * int(state["plan"]["generators"])
    state["complete"] = len(results) >= expected
    Path(state["path"]).write_text(json.dumps({
        "t0": state["t0"], "complete": state["complete"], "expected_reports": expected, "phases": results,
    }))


class OpenLoopGenerator(User):
    """One per worker: runs this worker's share of the whole plan, then idles until the master quits."""

    @task
    def run_plan(self) -> None:
        if not _plan_arrived.wait(timeout=60):
            raise RuntimeError("no plan from the master within 60 s")
        runner = self.environment.runner
        worker = int(getattr(runner, "worker_index", 0) or 0)
        Engine(self.environment, _plan["plan"], float(_plan["t0"]), worker).run()

    # After its plan the user waits (and a waiting user stops at once when the master quits).
    wait_time = constant(24 * 3600)
