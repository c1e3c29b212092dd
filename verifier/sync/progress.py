"""Progress of a full resync: a bar when a person watches, a line in the log otherwise (verifier.lib.progress)."""

from __future__ import annotations

import logging
from typing import TextIO

from verifier.lib.progress import Bar

log = logging.getLogger("verifier.sync")


class Progress:
    """``update(done)`` as records load; ``finish()`` at the end.

    A ``rich`` bar on ``stream`` (stderr) when :func:`verifier.lib.progress.bar_enabled` says so;
    elsewhere a progress line in the log every ``log_every_s`` seconds. ``finish()`` logs the
    total either way."""

    def __init__(self, total: int, label: str = "resync", *, stream: TextIO | None = None,
                 log_every_s: float = 5.0) -> None:
        self.total = max(0, total)
        self.label = label
        self._bar = Bar(label, self.total, stream=stream, logger=log, log_every_s=log_every_s)
        self.tty = self._bar.drawn

    @property
    def done(self) -> int:
        return int(self._bar.done)

    def update(self, done: int) -> None:
        self._bar.update(done)

    def finish(self) -> float:
        """Final line; returns the elapsed seconds."""
        elapsed = self._bar.finish()
        log.info("%s: %d records in %.1f s (%.0f/s)", self.label, self.done, elapsed,
                 self.done / elapsed if elapsed > 0 else 0.0)
        return elapsed
