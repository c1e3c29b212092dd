"""``free_port``: the ports the demo, the tests and the fault trial pick before they bind.

A port from the kernel's ephemeral range can be given to an outgoing connection between
the probe and the bind (seen once in CI: the demo's API child found its port taken), so
``free_port`` takes ports under that range, never the same twice in one process.
"""
from __future__ import annotations

import socket

from verifier.lib import redis_server
from verifier.lib.redis_server import FORBIDDEN_PORTS, free_port


def test_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    low, high = redis_server._ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        assert not low <= port <= high, (port, low, high)
        assert port not in FORBIDDEN_PORTS
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_cluster_port_has_its_bus_port_free_and_outside_the_range_too() -> None:
    low, high = redis_server._ephemeral_range()
    for _ in range(10):
        port = free_port(with_cluster_bus=True)
        assert not low <= port + 10000 <= high
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 10000))


def test_a_port_in_use_is_not_handed_out(monkeypatch) -> None:
    # a window of 40 ports of which the first 30 listen: only the last 10 may come out
    start = 0
    for candidate in range(20000, 29000, 50):
        if all(redis_server._bindable(port) for port in range(candidate, candidate + 40)):
            start = candidate
            break
    assert start, "no window of 40 free ports"
    listeners = []
    try:
        for port in range(start, start + 30):
            sock = socket.socket()
            sock.bind(("127.0.0.1", port))
            sock.listen()
            listeners.append(sock)
        monkeypatch.setattr(redis_server, "_LOW_PORTS", (start, start + 39))
        monkeypatch.setattr(redis_server, "_handed_out", set())
        got = {free_port() for _ in range(10)}
        assert got == set(range(start + 30, start + 40))
    finally:
        for sock in listeners:
            sock.close()
