"""Application logging: one line per event, on stderr, with no personal data.

What is never logged, anywhere in the service: QR texts, card certificates,
names, dates of birth, social security and card numbers, API key secrets, request
bodies. Log key ids, result codes, counts and durations instead; the audit stream
(not the log) is where a verification's permit number is kept. Uvicorn's access log
is turned off by ``verifier serve`` (it also costs ~50 µs a request).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Set up the root logger once (idempotent): a plain line format on stderr."""
    root = logging.getLogger()
    if not any(getattr(h, "_verifier", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._verifier = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
