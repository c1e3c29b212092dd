"""A clean stop of ``verifier serve``: new connections refused, open ones answered, then closed.

uvicorn, asked to stop, closes its listening socket, lets the requests in flight
finish (``timeout_graceful_shutdown``) and closes every idle kept-alive connection at
once, so a client that sends its next request on such a connection at that moment
gets a reset instead of an answer (issue 11, defect 5: 20 requests, 0.37 s after the
signal). Here:

- :class:`DrainingHttpToolsProtocol` (uvicorn's httptools protocol) keeps an idle
  kept-alive connection open for ``DRAIN_IDLE_S`` after the signal: a request that
  arrives on it in that time is answered as usual (the app is still up, and the
  verification is audited like any other) with ``Connection: close``, and the
  connection is closed after that answer; one that stays idle is closed at the end of
  the window (the ordinary end of a keep-alive, which clients expect). A request in
  flight at the signal is finished and answered with ``Connection: close``, or, when
  its headers went out before the signal, its connection is then treated as an open
  one (uvicorn would close it after an answer that promised keep-alive).
- :class:`Supervisor` (uvicorn's multiprocess supervisor), the moment SIGTERM or SIGINT
  arrives and before it passes the signal on to the workers, makes the listening
  socket (one socket, shared by every process) drop new connection attempts (a
  socket filter that drops every SYN: :func:`refuse_new_connections`) and closes its
  own copy; the workers accept what was already queued, serve it, and close theirs as
  they stop. A client that connects after the signal is refused (ECONNREFUSED, at its
  SYN's first retransmission, ~1 s, once the workers are gone), never accepted by the
  kernel and then reset with its request unanswered, which is what closing a
  listening socket with connections in its queue does. It also logs a worker that
  died (``kill -9``, a crash) and the replacement uvicorn starts for it.

Each worker logs one shutdown line with these counts and its audit's
(``verifier/api/runtime.py``).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import struct
from types import FrameType
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from verifier.lib.drain import DRAIN

__all__ = ["DRAIN_IDLE_S", "DrainingHttpToolsProtocol", "PROTOCOL", "Supervisor"]

log = logging.getLogger("verifier.serve")

DRAIN_IDLE_S = 1.0
"""How long after the signal an idle kept-alive connection is kept open for one more request."""

PROTOCOL = "verifier.run.drain:DrainingHttpToolsProtocol"
"""uvicorn's ``http`` option (an import path: the workers are spawned and import it)."""


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    _draining = False

    def shutdown(self) -> None:
        DRAIN.signalled = True
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if self.transport.is_closing():
                return
            # Idle: keep it for one more request during the drain, instead of closing under a client that
            # may be sending on it right now.
            self._draining = True
            self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)
        else:
            DRAIN.in_flight += 1
            if not cycle.response_started:
                cycle.keep_alive = False  # answered with Connection: close, then closed
            else:
                # Its headers are out without Connection: close (uvicorn would close it after the answer all
                # the same, under a client that may already send the next request): treat it as open.
                self._draining = True
                self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if self._draining and cycle is not None and not cycle.response_complete:
            self._draining = False
            cycle.keep_alive = False  # answered as usual, with Connection: close
            DRAIN.on_open_connections += 1

    def _close_if_idle(self) -> None:
        if not self._draining or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            DRAIN.idle_closed += 1
            self.transport.close()


class Supervisor(Multiprocess):
    """uvicorn's multiprocess supervisor, refusing new connections at the signal and saying when a worker died."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)

    def _on_stop_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit.is_set():
            log.warning("%s: refusing new connections, draining the workers", signal.Signals(sig).name)
        for sock in self.sockets:
            refuse_new_connections(sock)
            _close_quietly(sock)
        self.signal_queue.append(sig)
        self.should_exit.set()

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        for old, new in zip(before, self.processes):
            if new is not old:
                code = old.exitcode
                how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                log.warning("API worker (pid %s) died (%s); started a replacement (pid %s): the records of its "
                            "last audit flush interval (0.25 s) may be lost", old.pid, how, new.pid)


SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)
"""A classic BPF program of one instruction, ``ret #0``: keep 0 bytes of the packet (drop it)."""


def refuse_new_connections(sock: socket.socket) -> bool:
    """Drop every packet that reaches the listening ``sock`` (on Linux: the SYNs of new connections; the
    connections already made have sockets of their own). False where it cannot be done (the socket is
    then only closed)."""
    program = ctypes.create_string_buffer(_DROP_ALL)
    fprog = struct.pack("HL", 1, ctypes.addressof(program))  # struct sock_fprog {len; filter*}
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:  # pragma: no cover - already closed
        pass
