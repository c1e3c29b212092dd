"""The deployment files, checked without Docker or systemd (neither runs here): what they run exists.

- every command of ``compose.yaml`` (the services built from this image) and of the units in
  ``deploy/systemd/`` is a ``verifier`` command: ``verifier <command> --help`` answers, and the
  whole command line, flags and all, parses;
- the Dockerfile is multi-stage, builds and checks the compiled twin, runs as a user that is
  not root, holds no secrets, and installs with the README's Deployment lines (and the same
  package as the README's first command);
- the compose file has the two Redis servers with their AOF settings and a health check on
  every long-running service.
"""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from verifier.cli import build_parser
from tests.run.conftest import REPO, child_env

COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))
DOCKERFILE = (REPO / "Dockerfile").read_text()
README = (REPO / "README.md").read_text()


def _verifier_commands() -> dict[str, list[str]]:
    """Where each command line comes from -> its arguments after ``verifier``."""
    commands = {}
    for name, service in SERVICES.items():
        if service.get("image", "").startswith("permit-verifier") or "build" in service:
            commands[f"compose {name}"] = list(service["command"])
    for unit in UNITS:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(unit.read_text())
        argv = shlex.split(parser["Service"]["ExecStart"])
        assert Path(argv[0]).name == "verifier", (unit.name, argv)
        commands[f"unit {unit.name}"] = argv[1:]
    return commands


COMMANDS = _verifier_commands()


def _command_path(argv: list[str]) -> list[str]:
    """The sub-command words (``status-lists run``), before the first flag."""
    words = []
    for word in argv:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def test_the_files_name_the_processes_of_the_service() -> None:
    ran = {tuple(_command_path(argv)) for argv in COMMANDS.values()}
    assert {("serve",), ("sync",), ("status-lists", "run"), ("notify",), ("upstream",)} <= ran
    assert len([c for c in COMMANDS if c.startswith("unit ")]) == len(UNITS) >= 5


@pytest.mark.parametrize("where", sorted(COMMANDS))
def test_every_command_line_parses(where: str) -> None:
    args = build_parser().parse_args(COMMANDS[where])  # SystemExit (exit 2) on an unknown command or flag
    assert callable(args.func)
    if "--log-format" in COMMANDS[where]:
        assert args.log_format == "json"


@pytest.mark.parametrize("path", sorted({" ".join(_command_path(argv)) for argv in COMMANDS.values()}))
def test_every_command_answers_help(path: str) -> None:
    shown = subprocess.run([sys.executable, "-m", "verifier", *path.split(), "--help"], capture_output=True,
                           text=True, cwd=REPO, env=child_env(), timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: verifier {path}")


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), by stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _readme_install_lines() -> list[str]:
    section = README[README.index("\n## Deployment"):]
    block = re.search(r"```sh\n# install \(as the Dockerfile does[^\n]*\n(.*?)```", section, re.S)
    assert block, "the README's Deployment section has no install block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_dockerfile_installs_as_the_readme_says() -> None:
    build, run = _stages()[0], _stages()[-1]
    assert len(_stages()) >= 2 and " AS " in build[0].upper()
    runs = [line[4:].strip() for line in build if line.upper().startswith("RUN ")]
    readme = _readme_install_lines()
    assert [r for r in runs if r in readme] == readme, (runs, readme)
    # the same package as the README's first command (`pip install -q .`): the project itself, no extras
    first = re.search(r"pip install -q (\S+) && \.venv/bin/verifier demo", README)
    assert first and first.group(1) == "."
    assert any(re.search(r"pip install( --?\S+)* \.$", line) for line in readme)
    # the compiled twin is built in the image and checked there
    assert any("fastpath.IMPLEMENTATION != 'c'" in line for line in runs)
    # the last stage: the venv only, an unprivileged user
    assert any(line.startswith("COPY --from=") for line in run)
    users = [line.split()[1] for line in run if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert not any("build-essential" in line for line in run)


def test_no_secrets_in_the_deployment_files() -> None:
    texts = [DOCKERFILE, (REPO / "compose.yaml").read_text()] + [u.read_text() for u in UNITS]
    texts.append((REPO / "deploy" / "systemd" / "verifier.env.example").read_text())
    for text in texts:
        assert "pvk_" not in text and "whsec_" not in text and "BEGIN PRIVATE KEY" not in text
        assert not re.search(r"(?i)(password|secret|token)\s*[:=]\s*\S", text)
        assert not re.search(r"redis://[^@/\s]*:[^@/\s]+@", text)  # no password in a URL


def test_compose_has_both_redis_servers_durable_and_health_checks() -> None:
    index, store = SERVICES["redis"]["command"], SERVICES["store"]["command"]
    assert index[index.index("--appendonly") + 1] == "yes"
    assert store[store.index("--appendonly") + 1] == "yes" and store[store.index("--appendfsync") + 1] == "always"
    assert store[store.index("--maxmemory-policy") + 1] == "noeviction"
    for name in ("redis", "store", "upstream", "sync", "status-lists", "api", "notify"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD", name
    env = COMPOSE["x-verifier"]["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:") and env["VERIFIER_STORE_URL"].startswith("redis://store:")
    # nothing but the API is published, and on the loopback only
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert published == {"api": ["127.0.0.1:8000:8000"]}


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore line as a regular expression (Go's filepath.Match with ``**``; enough for ours)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?")


def test_the_build_context_holds_every_tracked_file_of_the_package() -> None:
    ignored = [_docker_pattern(line.strip()) for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files", "verifier", "fastpath", "pyproject.toml", "setup.py", "README.md"],
                             capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    assert "verifier/api/counter/static/index.html" in tracked and "fastpath/_verify_c.pyx" in tracked
    left_out = [path for path in tracked if any(p.fullmatch(path) for p in ignored)]
    assert not left_out, left_out
    # and what a local build leaves behind stays out
    for built in ("fastpath/_verify_c.c", "fastpath/_verify_c.cpython-311-x86_64-linux-gnu.so",
                  "verifier/api/__pycache__/app.cpython-311.pyc", ".venv/bin/python", "tests/conftest.py"):
        assert any(p.fullmatch(built) for p in ignored), built
