"""Progress bars of the long commands (resync, index check, audit export, load-test data and runs,
status-list builds): a ``rich`` bar on stderr when a person watches, a log line now and then otherwise.

When a bar is drawn (:func:`bar_enabled`):

- ``auto`` (default): when stderr is a terminal;
- ``on`` (``--progress``): also when it is not (a ``tee``'d terminal session);
- ``off`` (``--no-progress``): never;

and never in JSON log mode (``--log-format json``: stderr then holds JSON lines only) nor on
CI (``$CI`` set: the settings turn it off, whatever the flag says). Where no bar is drawn,
a bar with a ``logger`` logs ``label: done/total unit (share), rate`` every ``log_every_s``.

Each command calls :func:`configure_progress` with ``Settings.progress`` (the flag, or
``VERIFIER_PROGRESS``), as it calls ``configure_logging``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, TextIO

from verifier.lib.logging import json_mode

__all__ = ["PROGRESS_MODES", "Bar", "add_progress_flag", "bar_enabled", "configure_progress", "progress_override"]

PROGRESS_MODES = ("auto", "on", "off")

_mode = "auto"


def configure_progress(mode: str, log_format: str = "text") -> None:
    """``Settings.progress`` and ``Settings.log_format``: JSON log lines mean no bar."""
    global _mode
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress is one of {', '.join(PROGRESS_MODES)}, not {mode!r}")
    _mode = "off" if log_format == "json" else mode


def bar_enabled(stream: TextIO | None = None) -> bool:
    """Whether a bar is drawn on ``stream`` (stderr by default) now."""
    if _mode == "off" or json_mode():
        return False
    if _mode == "on":
        return True
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="draw a progress bar on stderr (default: when stderr is a terminal; never in JSON "
                        "log mode or on CI; $VERIFIER_PROGRESS=auto|on|off)")


def progress_override(value: bool | None) -> str | None:
    """``--progress``/``--no-progress`` as a ``Settings.progress`` override (None: not given)."""
    return None if value is None else ("on" if value else "off")


class Bar:
    """``update(done)`` or ``advance(n)`` as the work goes, ``finish()`` (or leave the ``with``) at the end."""

    def __init__(self, label: str, total: int | float | None = None, *, unit: str = "records",
                 stream: TextIO | None = None, logger: logging.Logger | None = None,
                 log_every_s: float = 5.0) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done: float = 0
        self.logger = logger
        self.log_every_s = log_every_s
        self.started = time.monotonic()
        self._last_log = self.started
        self._finished = False
        self._live: Any = None
        self._task: Any = None
        if bar_enabled(stream):
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            target = stream if stream is not None else sys.stderr
            console = Console(file=target, force_terminal=True if _mode == "on" else None)
            columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(),
                       TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]
            self._live = Progress(*columns, console=console, transient=False, refresh_per_second=8)
            self._live.start()
            self._task = self._live.add_task(label, total=total)

    @property
    def drawn(self) -> bool:
        return self._live is not None

    def update(self, done: float, total: int | float | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self._live is not None:
            self._live.update(self._task, completed=done, total=self.total)
        elif self.logger is not None:
            now = time.monotonic()
            if now - self._last_log >= self.log_every_s:
                self._last_log = now
                self.logger.info("%s: %s", self.label, self._summary(now))

    def advance(self, n: float = 1) -> None:
        self.update(self.done + n)

    def _summary(self, now: float) -> str:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total:.0f}" if self.total is not None else ""
        return f"{self.done:.0f}{of} {self.unit}{share}, {rate:.0f}/s"

    def finish(self) -> float:
        """Stop the bar (its last state stays on screen); the elapsed seconds."""
        elapsed = time.monotonic() - self.started
        if not self._finished:
            self._finished = True
            if self._live is not None:
                self._live.update(self._task, completed=self.done)
                self._live.stop()
        return elapsed

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
