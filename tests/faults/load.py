"""The trial's load generator: threads sending a steady mix over plain HTTP, every answer kept.

The mix, in turn on every thread: a WP1 code of an active permit (must be ``VALID``), a
WP1 code of a cancelled permit (``PERMIT_CANCELLED``), the valid code with one bit
of its signature flipped (``BAD_SIGNATURE`` or ``MALFORMED``), a card read
(challenge, the card signs it, ``POST /v1/verify/card``: ``VALID``) and a look-up by
permit number (``GET /v1/permits/{pn}``: found, status active). Every verification
carries a terminal id of its own, so that its audit record can be found by it.

Half of the threads keep their connections alive (as a scanner's client does), the
other half open a new connection for every request (so the kernel spreads them over
both API workers). Arrivals are paced at a fixed rate; a thread that falls behind
(answers slower than the pace) sends its next request at once.

:func:`analyse` turns the answers, the fault's timeline and the audit stream into
one row of the report.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.stack import Samples

CLIENT_TIMEOUT_S = 10.0
"""An answer that takes longer than this is a hang (the request is counted as unanswered)."""

UNAVAILABLE = "STATUS_UNAVAILABLE"


@dataclass
class Answer:
    kind: str
    """wp1-valid, wp1-cancelled, wp1-tampered, challenge, card-valid, permit-valid."""
    sent: float
    done: float
    status: int
    """HTTP status; 0 when no answer came (reset, refused, timeout)."""
    result: str = ""
    """The verdict's result, or for a look-up "found:<status>"; "" otherwise."""
    error: str = ""
    """The transport error's class name, when no answer came."""
    terminal: str = ""
    problem: bool = False
    """The body was an RFC 9457 problem document."""
    lag_s: float | None = None
    reused: bool = False
    """Sent on a kept-alive connection (not a new one)."""
    reasons: str = ""
    """The verdict's reasons (comma-separated), or a problem document's title."""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def latency(self) -> float:
        return self.done - self.sent


EXPECTED: dict[str, frozenset[str]] = {
    "wp1-valid": frozenset({"VALID"}),
    "wp1-cancelled": frozenset({"PERMIT_CANCELLED"}),
    "wp1-tampered": frozenset({"BAD_SIGNATURE", "MALFORMED"}),
    "card-valid": frozenset({"VALID"}),
    "permit-valid": frozenset({"found:active"}),
}
VERIFICATIONS = ("wp1-valid", "wp1-cancelled", "wp1-tampered", "card-valid", "wp1-victim")


class Load:
    """``threads`` senders at ``rate`` requests/s in all, until :meth:`stop`."""

    def __init__(self, api_url: str, token: str, samples: Samples, row: str, *, threads: int = 4,
                 rate: float = 40.0, victim: str = "") -> None:
        self.api_url = api_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.samples = samples
        self.victim = victim
        """A WP1 code of a permit the row cancels during its fault (kind ``wp1-victim``), or ""."""
        self.row = row
        self.threads = threads
        self.interval = threads / rate
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._serial = itertools.count()
        self._local = threading.local()

    def __enter__(self) -> "Load":
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n, n % 2 == 0), name=f"load-{n}", daemon=True)
            self._workers.append(thread)
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=CLIENT_TIMEOUT_S * 3)
        assert not any(t.is_alive() for t in self._workers), "a load thread did not stop"

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_answers(self, kind: str, result: str, count: int, timeout_s: float = 60.0) -> None:
        """Until ``count`` answers of ``kind`` with ``result`` came after now."""
        since = time.monotonic()
        deadline = since + timeout_s
        while sum(a.kind == kind and a.result == result and a.sent >= since for a in self.snapshot()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {result} answers to {kind} within {timeout_s} s")
            time.sleep(0.05)

    # -- one sender ----------------------------------------------------------------------

    def slow_bodies(self, count: int, release: threading.Event) -> list[threading.Thread]:
        """``count`` verifies of the valid code whose body is sent in two parts: the headers and half the
        body now, the rest once ``release`` is set. The API has them in flight meanwhile (its handler is
        waiting for the body). Answers of kind ``wp1-valid`` with ``slow`` in their terminal id."""
        import json
        import socket
        from urllib.parse import urlsplit

        target = urlsplit(self.api_url)
        started = threading.Barrier(count + 1, timeout=30)

        def send(n: int) -> None:
            terminal = f"{self.row}-slow-{n}"
            body = json.dumps({"qr": self.samples.valid_wp1, "terminal": terminal}).encode()
            head = (f"POST /v1/verify/qr HTTP/1.1\r\nHost: {target.netloc}\r\n"
                    f"Authorization: {self.headers['Authorization']}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            sent = time.monotonic()
            try:
                with socket.create_connection((target.hostname, target.port), timeout=CLIENT_TIMEOUT_S) as sock:
                    sock.sendall(head + body[: len(body) // 2])
                    started.wait()
                    release.wait(CLIENT_TIMEOUT_S)
                    sock.sendall(body[len(body) // 2:])
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
            except (OSError, threading.BrokenBarrierError) as exc:
                self._keep(Answer("wp1-valid", sent, time.monotonic(), 0, error=type(exc).__name__, terminal=terminal))
                return
            done = time.monotonic()
            status_line, _, rest = data.partition(b"\r\n")
            parts = status_line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            result = ""
            if status == 200:
                try:
                    result = json.loads(rest.partition(b"\r\n\r\n")[2]).get("result", "")
                except ValueError:
                    result = ""
            self._keep(Answer("wp1-valid", sent, done, status, result=result, terminal=terminal,
                              error="" if status else "no status line"))

        threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(count)]
        for thread in threads:
            thread.start()
        started.wait()  # every one of them has its headers and half its body on the wire
        return threads

    def _run(self, n: int, keepalive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if keepalive else 0, max_connections=1)
        kinds = itertools.cycle(["wp1-valid", "wp1-cancelled", "card-valid", "wp1-valid", "wp1-tampered",
                                 "permit-valid"] + (["wp1-victim"] if self.victim else []))
        next_at = time.monotonic()
        with httpx.Client(base_url=self.api_url, timeout=CLIENT_TIMEOUT_S, limits=limits,
                          headers=self.headers) as client:
            while not self._stop.is_set():
                now = time.monotonic()
                if next_at > now:
                    self._stop.wait(next_at - now)
                    if self._stop.is_set():
                        break
                next_at = max(next_at + self.interval, time.monotonic() - self.interval)
                kind = next(kinds)
                if kind == "card-valid":
                    challenge = self._send(client, "challenge", "POST", "/v1/cards/challenge", None, keepalive)
                    if challenge is None:
                        continue
                    body = {"certificate": self.samples.card_certificate, "challenge": challenge,
                            "signature": self.samples.sign(challenge)}
                    self._send(client, kind, "POST", "/v1/verify/card", body, keepalive)
                elif kind == "permit-valid":
                    self._send(client, kind, "GET", f"/v1/permits/{self.samples.valid_pn}", None, keepalive)
                else:
                    code = {"wp1-valid": self.samples.valid_wp1, "wp1-cancelled": self.samples.cancelled_wp1,
                            "wp1-tampered": self.samples.tampered_wp1, "wp1-victim": self.victim}[kind]
                    self._send(client, kind, "POST", "/v1/verify/qr", {"qr": code}, keepalive)

    def _send(self, client: httpx.Client, kind: str, method: str, path: str, body: dict[str, Any] | None,
              keepalive: bool) -> Any:
        terminal = ""
        if body is not None:
            terminal = f"{self.row}-{next(self._serial)}"
            body = {**body, "terminal": terminal}
        reused = keepalive and self._local.__dict__.get("alive", False)
        sent = time.monotonic()
        try:
            reply = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            self._local.alive = False
            self._keep(Answer(kind, sent, time.monotonic(), 0, error=type(exc).__name__, terminal=terminal,
                              reused=reused))
            return None
        self._local.alive = reply.headers.get("connection", "").lower() != "close"
        done = time.monotonic()
        answer = Answer(kind, sent, done, reply.status_code, terminal=terminal, reused=reused,
                        problem=reply.headers.get("content-type", "").startswith("application/problem+json"),
                        headers={k: reply.headers[k] for k in ("retry-after", "connection") if k in reply.headers})
        out = None
        if reply.status_code == 200:
            try:
                data = reply.json()
            except ValueError:
                data = {}
            if kind == "challenge":
                out = data.get("challenge")
            elif kind == "permit-valid":
                answer.result = f"found:{(data.get('permit') or {}).get('status', '?')}"
                answer.lag_s = data.get("lag_s")
            else:
                answer.result = str(data.get("result", ""))
                answer.lag_s = data.get("lag_s")
                answer.reasons = ",".join(map(str, data.get("reasons") or ()))
        elif answer.problem:
            try:
                answer.reasons = str(reply.json().get("title", ""))
            except ValueError:
                pass
        self._keep(answer)
        return out

    def _keep(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)


# -- figures -------------------------------------------------------------------------------


@dataclass
class Window:
    """A time when status is unknown to the service: no VALID may be answered inside it."""

    start: float
    end: float
    why: str


def false_valids(answers: Iterable[Answer], windows: list[Window], victim_cancelled: float | None = None) -> list[Answer]:
    """A VALID where another verdict was expected, or a VALID wholly inside a window of unknown status.

    The victim's code (``wp1-victim``) is VALID until its cancellation is in the index, and must not be
    VALID for a request sent after ``victim_cancelled`` (that moment plus the trial's grace: stale state)."""
    out = []
    for a in answers:
        if a.result != "VALID":
            continue
        if a.kind == "wp1-victim":
            if victim_cancelled is not None and a.sent >= victim_cancelled:
                out.append(a)
            elif any(w.start <= a.sent and a.done <= w.end for w in windows):
                out.append(a)
            continue
        if "VALID" not in EXPECTED.get(a.kind, frozenset()):
            out.append(a)
        elif any(w.start <= a.sent and a.done <= w.end for w in windows):
            out.append(a)
    return out


def stable_from(answers: list[Answer], since: float, kind: str = "wp1-valid", result: str = "VALID") -> float | None:
    """The send time of the first ``kind`` answer after ``since`` from which on every one is ``result``."""
    mine = sorted((a for a in answers if a.kind == kind and a.sent >= since), key=lambda a: a.sent)
    first = None
    for a in mine:
        if a.result == result:
            if first is None:
                first = a.sent
        else:
            first = None
    return first


def audit_check(answers: list[Answer], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Answered verifications against their records (by terminal id), look-ups by count."""
    answered = [a for a in answers if a.kind in VERIFICATIONS and a.status == 200]
    seen = Counter(r.get("terminal", "") for r in records if r.get("kind") != "permit")
    lost = [a for a in answered if seen[a.terminal] == 0]
    duplicated = sum(n - 1 for t, n in seen.items() if t and n > 1)
    # GET /v1/permits: 200s and the 503s are audited; the records name no terminal, so count them.
    lookups = sum(a.kind == "permit-valid" and a.status in (200, 404, 503) for a in answers)
    lookup_records = sum(r.get("kind") == "permit" for r in records)
    return {"answered": len(answered), "lost": lost, "duplicated": duplicated,
            "lookups": lookups, "lookup_records": lookup_records}


def summary(answers: list[Answer]) -> dict[str, Any]:
    latencies = sorted(a.latency for a in answers if a.status)
    def pct(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3) if latencies else None
    return {
        "requests": len(answers),
        "http_5xx": sum(a.status >= 500 for a in answers),
        "http_503": sum(a.status == 503 for a in answers),
        "http_5xx_not_503_problem": sum(a.status >= 500 and not (a.status == 503 and a.problem) for a in answers),
        "no_answer": dict(Counter(a.error for a in answers if a.status == 0)),
        "hangs": sum(a.error in ("ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectTimeout") for a in answers),
        "status_unavailable": sum(a.result == UNAVAILABLE for a in answers),
        "latency_p50_s": pct(0.5),
        "latency_p99_s": pct(0.99),
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "results": dict(Counter(f"{a.kind}:{a.result or a.status or a.error}" for a in answers)),
        "unavailable_because": dict(Counter(a.reasons or "?" for a in answers
                                            if a.result == UNAVAILABLE or a.status == 503)),
    }
