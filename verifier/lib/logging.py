"""Application logging: one format for every process, one line per event, on stderr, no personal data.

Two formats, the same for the API workers, the sync job, the simulator, the notifier,
the status-list writer, the card bridge and the demo (``--log-format``, or
``VERIFIER_LOG_FORMAT``):

- ``text`` (default): ``2026-12-07T01:02:03.456Z INFO verifier.sync[1234]: message``,
  then `` request_id=...`` and any structured fields as ``key=value``;
- ``json``: one JSON object a line, ``{"ts": RFC 3339 UTC, "level", "logger", "msg",
  "pid", "request_id" (where there is one), ...fields}``; a traceback is ``exc``.

Structured fields are what a call passes in ``extra={...}``. The request id of the
request being served (``verifier.api.request_id``) is read from :data:`REQUEST_ID`, a
context variable, so every line logged while serving that request carries it.

What is never logged, anywhere in the service: QR texts, card certificates,
names, dates of birth, social security, card and permit numbers, API key secrets,
request bodies, URLs that hold any of those (httpx logs every URL at INFO and DEBUG:
its loggers are held at WARNING). Log key ids, result codes, counts and durations
instead; the audit (not the log) is where a verification's permit number is kept.
``tests/run/test_run_logs.py`` greps every line of a demo run at DEBUG for every
demo SSN, card number, permit number and name. Uvicorn's access log is turned off
by ``verifier serve`` (it also costs ~50 µs a request).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from contextvars import ContextVar
from typing import Any

import orjson

__all__ = ["LOG_FORMATS", "REQUEST_ID", "JsonFormatter", "TextFormatter", "add_log_flags", "configure_logging",
           "json_mode", "notice"]

LOG_FORMATS = ("text", "json")

REQUEST_ID: ContextVar[str] = ContextVar("verifier_request_id", default="")
"""The id of the request being served in this context (empty outside a request)."""

# Loggers whose DEBUG/INFO lines name URLs (with permit numbers in their paths) or bodies.
_QUIET = ("httpx", "httpcore", "hpack", "multipart", "asyncio", "watchfiles",
          # redis-py's DEBUG lines: a line per reconnect attempt, and a notice per connection that
          # the server knows no CLIENT MAINT_NOTIFICATIONS; its warnings still show
          "redis.connection", "redis.asyncio.connection", "redis.client", "redis.asyncio.client")

# The attributes every LogRecord has; anything else on a record came in ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message", "asctime", "request_id", "taskName", "color_message"}


def _install_record_factory() -> None:
    """Every record made while serving a request carries its id (``record.request_id``), taken when
    the record is made: a handler that formats later (a queue, pytest's caplog) still has it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_verifier", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    factory._verifier = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


def _timestamp(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``TS LEVEL logger[pid]: message request_id=... key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record.created)} {record.levelname} {record.name}[{record.process}]: {record.getMessage()}"
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            line += f" request_id={request_id}"
        for key, value in _fields(record).items():
            line += f" {key}={value}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line (JSON Lines)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Set up the root logger (idempotent; a second call may change the level and the format).

    Every process calls this once from its command, with the settings' ``log_level`` and
    ``log_format``; uvicorn's loggers propagate to it (``log_config=None``)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_verifier", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._verifier = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would print a second format
        uvicorn_log = logging.getLogger(name)
        uvicorn_log.handlers.clear()
        uvicorn_log.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # it names paths (with permit numbers)


def json_mode() -> bool:
    """Whether this process logs JSON lines (then nothing but JSON may go to its stderr or stdout)."""
    return any(getattr(h, "_verifier", False) and isinstance(h.formatter, JsonFormatter)
               for h in logging.getLogger().handlers)


def notice(logger: logging.Logger, message: str, *, stream: Any = None, **fields: Any) -> None:
    """A line an operator must see whatever the log level ("serving on http://..."): printed as it is
    in text mode (on ``stream``, stdout by default), one INFO record in JSON mode (whatever the level)."""
    if not json_mode():
        print(message, file=stream if stream is not None else sys.stdout, flush=True)
        return
    record = logger.makeRecord(logger.name, logging.INFO, "(notice)", 0, message, None, None, extra=fields or None)
    logger.handle(record)


def add_log_flags(parser: argparse.ArgumentParser, *, level: bool = True, level_default: str | None = None) -> None:
    """``--log-format text|json`` (and ``--log-level``), the same on every long-running command."""
    if level:
        parser.add_argument("--log-level", default=level_default,
                            help=f"log level (default: $VERIFIER_LOG_LEVEL or {level_default or 'INFO'})")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="log lines as text or as JSON lines (default: $VERIFIER_LOG_FORMAT or text)")
