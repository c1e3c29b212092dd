"""Probes as an operator's tools send them: HEAD on /metrics and the health endpoints, one charset
in the metrics' content type; and /v1/admin/sync with every instant in one format (RFC 3339 UTC)."""

from __future__ import annotations

import datetime as dt
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import World
from tests.api.servers import Server
from verifier.index.sync_status import SyncStatus, write_sync_status

PROBES = ("/metrics", "/health/live", "/health/ready")
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def test_metrics_name_one_charset(client: Any) -> None:
    content_type = client.get("/metrics").headers["content-type"]
    parameters = [p.strip().lower() for p in content_type.split(";")]
    assert parameters[0] == "text/plain"
    assert [p for p in parameters if p.startswith("charset")] == ["charset=utf-8"], content_type
    assert "version=0.0.4" in parameters  # the Prometheus text format, as scrapers negotiate it
    assert list(text_string_to_metric_families(client.get("/metrics").text))


def test_head_answers_what_get_would_without_a_body(client: Any) -> None:
    for path in PROBES:
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.content == b"", path


def test_head_over_a_real_server_sends_headers_only(world: World, servers: Callable[..., Server]) -> None:
    server = servers(1)
    host, port = server.url.removeprefix("http://").split(":")
    for path in PROBES:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            # two requests on one connection: a body after the HEAD answer would be read as
            # the start of the second answer
            conn.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /health/live HTTP/1.1\r\nHost: x\r\n"
                         f"Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), (path, head)
        assert rest.startswith(b"HTTP/1.1 200"), (path, rest[:200])  # nothing between the two answers


def _walk(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_walk(item, f"{prefix}{key}."))
            out[prefix + key] = item
    return out


def test_admin_sync_gives_every_instant_in_rfc3339_utc(client: Any, world: World) -> None:
    now = time.time()
    write_sync_status(world.redis_sync, SyncStatus(
        instance="host:1:abc", role="leader", state="following", cursor=world.index.seq, head_seq=world.index.seq,
        lag_events=0, lag_s=0.0, generation=1, last_poll_at=now - 0.25, caught_up_at=now - 0.5,
        last_error=None, last_error_at=None, started_at=now - 60, updated_at=now - 0.25,
    ))
    body = client.get("/v1/admin/sync", headers=world.headers("admin")).json()
    fields = _walk(body)
    instants = {k: v for k, v in fields.items() if k.endswith(("_at", ".time"))}
    assert {"sync.last_poll_at", "sync.caught_up_at", "sync.started_at", "sync.updated_at",
            "index_as_of.time"} <= set(instants)
    for name, value in instants.items():
        assert value is None or (isinstance(value, str) and RFC3339_UTC.match(value)), (name, value)
    # epoch seconds beside each, named *_epoch, the same instant
    for name, value in instants.items():
        if name.endswith("_at"):
            epoch = fields[name + "_epoch"]
            if value is None:
                assert epoch is None, name
            else:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                assert abs(parsed - epoch) < 0.001, (name, value, epoch)
    assert fields["sync.last_error_at"] is None and fields["sync.last_error_at_epoch"] is None
    assert abs(fields["sync.last_poll_at_epoch"] - (now - 0.25)) < 1e-6
    # no other number in the answer is an instant in disguise (only durations, counts, sequences)
    for name, value in fields.items():
        if isinstance(value, float) and not name.endswith("_epoch"):
            assert name.endswith("_s"), (name, value)
