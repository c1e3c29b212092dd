"""HTTP load for the API benchmark: wrk when installed, else a bounded Python generator.

Both drive keep-alive connections from a separate process on 127.0.0.1, POSTing the
given bodies in turn (one body repeated, or many distinct ones so that no request
repeats an earlier one within the run), and report the same figures:
requests, seconds, requests/s, p50/p99 latency, errors. ``delay_ms`` paces each
connection (a pause before every request) to hold a rate below saturation; the
achieved rate is reported, not assumed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Connection, read, write and timeout errors plus non-2xx answers."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


_WRK_SCRIPT = r"""
wrk.method = "POST"
local bodies = {}
for line in io.lines(os.getenv("LOADGEN_BODY_FILE")) do bodies[#bodies + 1] = line end
wrk.body = bodies[1]
local next_body = 0
if #bodies > 1 then
  request = function()
    next_body = next_body % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[next_body])
  end
end
for line in io.lines(os.getenv("LOADGEN_HEADERS_FILE")) do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
local pause = tonumber(os.getenv("LOADGEN_DELAY_MS") or "0")
if pause > 0 then
  delay = function() return pause end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'LOADGEN {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_load(
    url: str,
    bodies: Sequence[bytes],
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    delay_ms: int = 0,
) -> LoadResult:
    """POST ``bodies`` in turn to ``url`` over ``connections`` keep-alive connections for ``seconds``.

    One client thread (wrk ``-t1``, or one Python process): on 2 cores the other core
    is the server's.
    """
    if any(b"\n" in body for body in bodies):
        raise ValueError("a body is one line (compact JSON)")
    if wrk_available():
        return _run_wrk(url, bodies, headers, connections, seconds, delay_ms)
    return _run_python(url, bodies, headers, connections, seconds, delay_ms)


def _run_wrk(
    url: str, bodies: Sequence[bytes], headers: dict[str, str], connections: int, seconds: float, delay_ms: int
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        script = os.path.join(tmp, "post.lua")
        body_file = os.path.join(tmp, "body")
        headers_file = os.path.join(tmp, "headers")
        with open(script, "w") as handle:
            handle.write(_WRK_SCRIPT)
        with open(body_file, "wb") as handle:
            handle.write(b"\n".join(bodies) + b"\n")
        with open(headers_file, "w") as handle:
            handle.write("".join(f"{k}: {v}\n" for k, v in {"Content-Type": "application/json", **headers}.items()))
        env = {
            **os.environ,
            "LOADGEN_BODY_FILE": body_file,
            "LOADGEN_HEADERS_FILE": headers_file,
            "LOADGEN_DELAY_MS": str(delay_ms),
        }
        command = [
            "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", script, url,
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    match = re.search(r"^LOADGEN (\{.*\})$", done.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout!r} {done.stderr!r}")
    figures = json.loads(match.group(1))
    elapsed = figures["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        connections=connections,
        requests=figures["requests"],
        seconds=round(elapsed, 3),
        requests_per_s=round(figures["requests"] / elapsed, 1),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=figures["errors"],
    )


# --- the fallback: asyncio keep-alive clients in a process of their own -----------------


def _run_python(
    url: str, bodies: Sequence[bytes], headers: dict[str, str], connections: int, seconds: float, delay_ms: int
) -> LoadResult:
    parts = urlsplit(url)
    head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    requests = [("\r\n".join([*head, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body
                for body in bodies]
    job = (parts.hostname, parts.port, requests, connections, seconds, delay_ms)
    # A process of its own, as wrk would be: the load generator never shares the caller's GIL.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        latencies, errors, elapsed = pool.apply(_client_process, job)
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return LoadResult(
        tool="python",
        connections=connections,
        requests=len(latencies),
        seconds=round(elapsed, 3),
        requests_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(50), 3),
        p99_ms=round(percentile(99), 3),
        errors=errors,
    )


def _client_process(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float, delay_ms: int
) -> tuple[list[float], int, float]:
    import uvloop  # ships with uvicorn[standard]

    return uvloop.run(_clients(host, port, requests, connections, seconds, delay_ms))


async def _clients(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float, delay_ms: int
) -> tuple[list[float], int, float]:
    turn = itertools.cycle(requests)
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        nonlocal errors
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors += 1
            return
        try:
            while time.perf_counter() < deadline:
                if delay_ms:
                    await asyncio.sleep(delay_ms / 1000)
                sent = time.perf_counter()
                writer.write(next(turn))
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
        except (OSError, asyncio.IncompleteReadError, AttributeError):
            errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, errors, time.perf_counter() - started
