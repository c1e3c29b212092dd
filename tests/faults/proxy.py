"""A real TCP proxy in front of the upstream simulator, run as a process of its own.

``python -m tests.faults.proxy --listen PORT --target PORT --control PORT``

The sync job of the fault trial reaches the upstream through it, so the trial can
break the upstream in the ways the simulator's own switches cannot:

- ``reset``: every new connection is accepted and closed at once with an RST
  (``SO_LINGER`` 0), and the connections already open are reset too;
- ``pass``: bytes flow both ways untouched (the default);
- killing this process (``kill -9``) is the upstream killed: the port refuses
  connections until the proxy is started again on it.

The control port takes one line and answers one line: ``mode reset`` / ``mode pass``
(answer ``ok``), ``stats`` (answer a JSON object: connections accepted in each mode,
and the accept time (epoch seconds) and mode of the last 500 connections), so that the trial
can see how often the sync job tried while the upstream was down (its back-off).
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from collections import deque

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.accepted: dict[str, int] = {"pass": 0, "reset": 0}
        self.accept_times: deque[tuple[float, str]] = deque(maxlen=500)
        self._open: set[asyncio.StreamWriter] = set()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        writer.transport.abort()

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted[self.mode] += 1
        self.accept_times.append((round(time.time(), 3), self.mode))
        if self.mode == "reset":
            self._reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self._reset(writer)
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    if dst.can_write_eof():
                        dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "reset":
            for writer in list(self._open):
                self._reset(writer)
            self._open.clear()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode().strip()
            if line in ("mode reset", "mode pass"):
                self.set_mode(line.split()[1])
                answer = "ok"
            elif line == "stats":
                answer = json.dumps({"mode": self.mode, "accepted": self.accepted,
                                     "accept_times": list(self.accept_times)})
            else:
                answer = f"error: unknown command {line!r}"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


async def serve(listen: int, target: int, control: int) -> None:
    proxy = Proxy(target)
    server = await asyncio.start_server(proxy.client, "127.0.0.1", listen, reuse_address=True)
    controller = await asyncio.start_server(proxy.control, "127.0.0.1", control, reuse_address=True)
    print(f"fault proxy 127.0.0.1:{listen} -> 127.0.0.1:{target} (control {control})", flush=True)
    async with server, controller:
        await asyncio.gather(server.serve_forever(), controller.serve_forever())


def command(control_port: int, line: str, timeout_s: float = 5.0) -> str:
    """Send one control line to a running proxy; its one-line answer."""
    with socket.create_connection(("127.0.0.1", control_port), timeout=timeout_s) as sock:
        sock.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.proxy")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.target, args.control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
