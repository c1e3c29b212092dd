"""Progress of a full resync: a bar on a terminal, a line in the log otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("verifier.sync")


class Progress:
    """``update(done)`` as records load; ``finish()`` at the end.

    On a terminal (``stream.isatty()``) it redraws one bar line at most 10 times a
    second; elsewhere it logs a progress line every ``log_every_s`` seconds.
    """

    def __init__(self, total: int, label: str = "resync", *, stream: TextIO | None = None,
                 log_every_s: float = 5.0) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = log_every_s
        self.started = time.monotonic()
        self._last = 0.0
        self.done = 0

    def _rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.tty:
            if now - self._last >= 0.1:
                self._last = now
                self._draw()
        elif now - self._last >= self.log_every_s:
            self._last = now
            share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
            log.info("%s: %d/%d records%s, %.0f/s", self.label, done, self.total, share, self._rate())

    def _draw(self) -> None:
        width = 30
        share = self.done / self.total if self.total else 1.0
        filled = int(width * min(1.0, share))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {100 * share:5.1f}% {self.done:,}/{self.total:,} {self._rate():,.0f}/s "
        )
        self.stream.flush()

    def finish(self) -> float:
        """Final line; returns the elapsed seconds."""
        elapsed = time.monotonic() - self.started
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        log.info("%s: %d records in %.1f s (%.0f/s)", self.label, self.done, elapsed,
                 self.done / elapsed if elapsed > 0 else 0.0)
        return elapsed
