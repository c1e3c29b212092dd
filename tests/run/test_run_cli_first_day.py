"""What a newcomer meets on the first day, as subprocesses: a bad or silent Redis, a busy port,
``--version``, ``card sign``'s help against its output, finding the demo's Redis.

Each failure is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.run.conftest import REPO, child_env
from verifier.issuing.card import SoftwareCard
from verifier.lib.redis_server import free_port

# Every command that talks to Redis, with the arguments it needs besides the URL.
REDIS_COMMANDS = {
    "api-keys list": ["api-keys", "list"],
    "api-keys create": ["api-keys", "create", "--role", "admin", "--name", "x", "--organisation", "o"],
    "terminals list": ["terminals", "list"],
    "audit export": ["audit", "export", "--since", "0"],
    "audit verify": ["audit", "verify"],
    "sync": ["sync", "--upstream", "http://127.0.0.1:9"],
    "index check": ["index", "check", "--upstream", "http://127.0.0.1:9"],
    "notify": ["notify"],
    "status-lists run": ["status-lists", "run"],
    "serve": ["serve", "--port", "0"],
}
MALFORMED = ["http://127.0.0.1:6380", "redis://127.0.0.1:port/0", "redis://", "redis://127.0.0.1:6380/zero",
             "127.0.0.1:6380", "redis+cluster://a-host-without-port"]


def verifier(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, cwd=cwd,
                          env=env or child_env(), timeout=timeout)


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("verifier"), lines
    return lines[0]


def test_version() -> None:
    from importlib.metadata import version

    result = verifier("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"verifier {version('permit-verifier')}"


@pytest.mark.parametrize(("command", "url"), [(c, MALFORMED[i % len(MALFORMED)]) for i, c in enumerate(REDIS_COMMANDS)]
                         + [("api-keys list", url) for url in MALFORMED[1:]])
def test_a_malformed_redis_url_is_one_line_and_exit_2(command: str, url: str, tmp_path: Path) -> None:
    line = one_line_exit_2(verifier(*REDIS_COMMANDS[command], "--redis", url, cwd=tmp_path))
    assert "is not a Redis URL" in line, line
    assert "--redis" in line


@pytest.mark.parametrize("command", list(REDIS_COMMANDS))
def test_an_unreachable_redis_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    line = one_line_exit_2(verifier(*REDIS_COMMANDS[command], "--redis", url, cwd=tmp_path))
    assert "cannot be reached" in line and url in line, line


def test_the_environments_url_is_checked_too(tmp_path: Path) -> None:
    line = one_line_exit_2(verifier("api-keys", "list", cwd=tmp_path,
                                    env={**child_env(), "REDIS_URL": "mysql://127.0.0.1/0"}))
    assert "is not a Redis URL" in line
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = one_line_exit_2(verifier("api-keys", "list", "--store", url, cwd=tmp_path))
    assert "the store of record's Redis" in line and "--store" in line


def test_a_password_is_never_printed(tmp_path: Path) -> None:
    url = f"redis://user:s3cr3t-pass@127.0.0.1:{free_port()}/0"
    result = verifier("api-keys", "list", "--redis", url, cwd=tmp_path)
    one_line_exit_2(result)
    assert "s3cr3t-pass" not in result.stderr + result.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_busy_port_says_which_and_what_to_do(command: str, busy_port: int, tmp_path: Path) -> None:
    line = one_line_exit_2(verifier(command, "--port", str(busy_port), "--state-dir", str(tmp_path / "state"),
                                    cwd=tmp_path))
    assert f"port {busy_port}" in line and "in use" in line and "--port" in line, line
    assert not (tmp_path / "state" / "redis.url").exists()  # nothing was started


def test_without_a_url_the_hint_names_the_demo(tmp_path: Path) -> None:
    for args in (["api-keys", "list"], ["sync", "--upstream", "http://127.0.0.1:9"], ["notify"]):
        result = verifier(*args, cwd=tmp_path, env={**child_env(), "VERIFIER_STATE_DIR": str(tmp_path / "none")})
        assert result.returncode == 2, result.stderr
        assert "verifier demo" in result.stderr and "Traceback" not in result.stderr


def test_the_demos_url_files_are_found(tmp_path: Path, redis_url: str) -> None:
    """The URL files the demo's servers write (verifier/run/private_redis.py) point every command at them."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "redis.url").write_text(redis_url + "\n")
    (state / "store.url").write_text(redis_url + "\n")
    env = {**child_env(), "VERIFIER_STATE_DIR": str(state)}
    made = verifier("api-keys", "create", "--role", "admin", "--name", "found the demo", "--organisation", "demo",
                    cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert "using the running demo's Redis" in made.stderr and redis_url in made.stderr
    listed = verifier("api-keys", "list", "--json", cwd=tmp_path, env=env)
    assert "found the demo" in listed.stdout
    # a URL given wins over the files
    other = f"redis://127.0.0.1:{free_port()}/0"
    assert "cannot be reached" in one_line_exit_2(verifier("api-keys", "list", "--redis", other, cwd=tmp_path, env=env))


def test_card_sign_prints_what_its_help_says(tmp_path: Path) -> None:
    help_text = verifier("card", "--help").stdout + verifier("card", "sign", "--help").stdout
    assert '{"signature": base64} (JSON)' in " ".join(help_text.split())
    card_key = SoftwareCard.generate().save(tmp_path / "card-key.json")
    signed = verifier("card", "sign", "--card-key", str(card_key), "--challenge", base64.b64encode(os.urandom(32)).decode())
    assert signed.returncode == 0, signed.stderr
    printed = json.loads(signed.stdout)
    assert list(printed) == ["signature"] and len(base64.b64decode(printed["signature"])) == 64
