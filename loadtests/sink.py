"""A minimal HTTP server that answers every request at once: what the generator's own ceiling is measured against.

    python -m loadtests.sink --port 0 --port-file FILE [--delay-ms 0] [--serial]

Keep-alive HTTP/1.1, ``200 {"status":"live"}`` for any request, nothing else: the
cost of an answer is as small as a Python server can make it, so that a step load
against it finds where the *generator* stops keeping its schedule. ``--delay-ms``
and ``--serial`` (one request at a time across all connections) make it a slow
service instead: the tests use that to show the open model keeping its arrivals
while the closed model slows down with the service. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

ANSWER = b'{"status":"live"}'
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
         + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
MAX_HEAD = 64 * 1024


async def serve(port: int, port_file: Path | None, delay_s: float, serial: bool) -> None:
    one_at_a_time = asyncio.Lock() if serial else None

    async def answer() -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_HEAD:
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                if one_at_a_time is not None:
                    async with one_at_a_time:
                        await answer()
                else:
                    await answer()
                writer.write(REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port, limit=MAX_HEAD, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    if port_file is not None:
        partial = port_file.with_name(port_file.name + ".partial")
        partial.write_text(str(bound))
        os.replace(partial, port_file)
    print(f"sink listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    with contextlib.suppress(Exception):
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, default=None, help="write the port here once listening")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before each answer")
    parser.add_argument("--serial", action="store_true", help="answer one request at a time")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.port_file, args.delay_ms / 1000.0, args.serial))
    return 0


if __name__ == "__main__":
    sys.exit(main())
