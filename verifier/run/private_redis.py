"""The private Redis-protocol servers as child processes of their own.

``python -m verifier.run.private_redis --state-dir DIR --url-file FILE [--appendfsync always]``
starts an :class:`~verifier.lib.redis_server.EmbeddedRedis` (data kept in DIR), writes
its URL to FILE once it answers, and stops it cleanly on SIGTERM or SIGINT.

With no URLs, ``verifier serve`` and ``verifier demo`` start two (:data:`INDEX`,
:data:`STORE`): the index's (a cache of the upstream, AOF fsynced every second: the
sync job replays what a crash lost) and, beside it, the store of record's (API keys,
the audit: nothing can rebuild them, so its AOF is fsynced before every answer).

Why a child and not an object in the demo's process: the server then lives in a
session of its own (see :mod:`verifier.run.processes`), so a terminal's Ctrl-C does
not shut Redis down under the API while the API is still flushing its audit
records; the parent stops it last.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verifier.lib.logging import configure_logging, notice
from verifier.lib.redis_server import EmbeddedRedis
from verifier.lib.settings import Settings
from verifier.run.processes import Child, wait_until

log = logging.getLogger("verifier.redis")


@dataclass(frozen=True)
class PrivateServer:
    """Which private server: its name (child, data folder ``state_dir/<name>``, log) and AOF fsync policy."""

    name: str
    appendfsync: str


INDEX = PrivateServer("redis", "everysec")
"""The index's server (its name stays ``redis``: the demo's info file and folders say so since the start)."""
STORE = PrivateServer("store", "always")
"""The store of record's server."""


def private_redis_child(state_dir: Path, log_dir: Path, server: PrivateServer = INDEX, *,
                        port: int | None = None) -> tuple[Child, Path]:
    """The server as a (not yet started) child keeping its data in ``state_dir/<name>``, and its URL file.
    ``port``: that port (a restart: the AOF file is named after it, and the other processes know the URL)."""
    url_file = state_dir / f"{server.name}.url"
    url_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "verifier.run.private_redis",
            "--state-dir", str(state_dir / server.name), "--url-file", str(url_file),
            "--appendfsync", server.appendfsync]
    if port is not None:
        argv += ["--port", str(port)]
    return Child(server.name, argv, log_dir / f"{server.name}.log"), url_file


def wait_for_url(url_file: Path, abort: Callable[[], None]) -> str:
    """The started server's URL, once it answers (``abort`` may raise: the child died, Ctrl-C)."""
    wait_until(url_file.exists, timeout_s=30, what="the private Redis server", abort=abort)
    return url_file.read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier.run.private_redis")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--url-file", required=True, type=Path)
    parser.add_argument("--appendfsync", default="everysec", choices=("always", "everysec"))
    parser.add_argument("--port", type=int, default=None, help="this port (default: a free one)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = EmbeddedRedis(args.state_dir, persist=True, appendfsync=args.appendfsync, port=args.port)
    server.start()
    try:
        partial = args.url_file.with_name(args.url_file.name + ".partial")
        partial.write_text(server.url + "\n")
        os.replace(partial, args.url_file)  # the parent never reads half a URL
        notice(log, f"private Redis-protocol server {server.binary} at {server.url}, data in {args.state_dir} "
               f"(appendfsync {args.appendfsync})")
        while not stop.wait(0.5):
            if not server.running:
                log.error("the Redis-protocol server exited on its own")
                return 1
        return 0
    finally:
        server.stop()
        args.url_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
