"""What the long-running commands (``verifier sync``, ``verifier status-lists run``, ...) share."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["NO_REDIS_URL", "run_until_signalled"]

NO_REDIS_URL = ("no Redis URL: set REDIS_URL or pass --redis, or run `verifier demo` in this folder "
                "(its URL is then found in .state/redis.url)")
"""The one line a command that needs the index's Redis prints without one."""


class _Runs(Protocol):
    def run(self) -> None: ...


def run_until_signalled(command: str, make: Callable[[threading.Event], _Runs]) -> int:
    """Run what ``make(stop)`` builds until SIGTERM or SIGINT sets ``stop``; exit code 0.

    A ``ValueError`` while building it (a setting it refuses) is one line on stderr and 2."""
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        worker = make(stop)
    except ValueError as exc:
        print(f"verifier {command}: {exc}", file=sys.stderr)
        return 2
    worker.run()
    return 0
