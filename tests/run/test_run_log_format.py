"""One log format for every process: the formatters, the flag on every long-running command, a real process."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import subprocess
import sys

import orjson
import pytest

from verifier.cli import build_parser
from verifier.lib.logging import REQUEST_ID, JsonFormatter, TextFormatter, configure_logging
from verifier.lib.settings import Settings
from tests.run.conftest import REPO, child_env

# Every command that runs until stopped, and the demo and serve that start them.
LONG_RUNNING = (("sync",), ("upstream",), ("notify",), ("notify", "receiver"), ("status-lists", "run"),
                ("card-bridge",), ("serve",), ("demo",))


def _record(msg: str = "resync: %d records", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("verifier.sync").makeRecord("verifier.sync", logging.WARNING, __file__, 1, msg,
                                                           args or (12,), None, extra=extra or None)
    return record


def test_a_json_line_has_the_named_fields_and_the_extra_ones() -> None:
    token = REQUEST_ID.set("req-7")
    try:
        line = JsonFormatter().format(_record(lag_s=1.5))
    finally:
        REQUEST_ID.reset(token)
    shown = orjson.loads(line)
    assert "\n" not in line
    assert shown["level"] == "WARNING" and shown["logger"] == "verifier.sync"
    assert shown["msg"] == "resync: 12 records" and shown["lag_s"] == 1.5 and shown["request_id"] == "req-7"
    when = dt.datetime.fromisoformat(shown["ts"].replace("Z", "+00:00"))  # RFC 3339, UTC
    assert shown["ts"].endswith("Z") and abs(when.timestamp() - dt.datetime.now(dt.timezone.utc).timestamp()) < 60


def test_no_request_id_outside_a_request_and_a_traceback_stays_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    shown = orjson.loads(JsonFormatter().format(record))
    assert "request_id" not in shown and "ValueError: boom" in shown["exc"]
    text = TextFormatter().format(_record(lag_s=2))
    assert " WARNING verifier.sync[" in text and text.endswith("resync: 12 records lag_s=2")


def test_the_settings_refuse_an_unknown_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIFIER_LOG_FORMAT", "JSON")
    assert Settings.from_env().log_format == "json"
    assert Settings.from_env().to_env()["VERIFIER_LOG_FORMAT"] == "json"
    monkeypatch.setenv("VERIFIER_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="text or json"):
        Settings.from_env()
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml")


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("command", LONG_RUNNING, ids=" ".join)
def test_every_long_running_command_takes_the_log_flags(command: tuple[str, ...]) -> None:
    options = {s for a in _subparser(build_parser(), command)._actions for s in a.option_strings}
    assert {"--log-format", "--log-level"} <= options


def test_a_real_process_logs_json_lines_only() -> None:
    # The simulator: its start-up lines (its own and uvicorn's) come out as JSON lines on stderr.
    process = subprocess.Popen(
        [sys.executable, "-m", "verifier", "upstream", "--port", "0", "--permits", "20", "--log-format", "json",
         "--log-level", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=child_env())
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(3)]
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    shown = [orjson.loads(line) for line in lines + err.splitlines() if line.strip()]
    assert {"verifier.upstream", "uvicorn.error"} <= {line["logger"] for line in shown}
    assert all({"ts", "level", "logger", "msg", "pid"} <= set(line) for line in shown)
    assert out == b""


def test_the_suites_privacy_watch_finds_personal_data_in_service_logs_only() -> None:
    from tests.support.log_privacy import _Watch

    watch = _Watch()
    service, other = logging.getLogger("verifier.api"), logging.getLogger("httpx")

    def emit(logger: logging.Logger, msg: str, *args: object) -> None:
        watch.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, args, None))

    emit(service, "permit %s looked up", "WP1100002020000001")
    emit(service, "holder %s", "SCHNEIDER, MAXIMILIAN")
    emit(service, "ssn 9110000198500000042 card S11000000000004")
    emit(service, "resync: %d records at seq %d, fence %d", 200, 3, 1796603326754460)
    emit(other, "HTTP Request: GET http://127.0.0.1/v1/permits/WP1100002020000001")  # the test's own client
    assert len(watch.found) == 3 and all("verifier.api" in line for line in watch.found)


@pytest.mark.parametrize("command", [("sync", "--redis", "redis://127.0.0.1:1/0", "--upstream", "http://127.0.0.1:1"),
                                     ("notify", "--redis", "redis://127.0.0.1:1/0"),
                                     ("status-lists", "run", "--redis", "redis://127.0.0.1:1/0"),
                                     ("upstream", "--port", "0")], ids=lambda c: c[0])
def test_a_log_format_in_the_environment_that_is_not_one_is_a_usage_error(command: tuple[str, ...]) -> None:
    env = {**child_env(), "VERIFIER_LOG_FORMAT": "xml"}
    shown = subprocess.run([sys.executable, "-m", "verifier", *command], capture_output=True, text=True, cwd=REPO,
                           env=env, timeout=60)
    assert shown.returncode == 2 and "text or json" in shown.stderr and "Traceback" not in shown.stderr
