"""``verifier api-keys add|list|revoke`` against a real Redis; the keys they make authenticate."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from verifier.api.auth.keys import KeyVerifier
from verifier.cli import main
from verifier.lib.redis_client import async_client

pytestmark = pytest.mark.integration

EMPLOYER = "91310000MA1FL0AB2C"


def authenticate(redis_url: str, token: str) -> Any:
    """The caller a fresh worker sees behind ``token`` (None: refused)."""
    async def check() -> Any:
        redis = async_client(redis_url)
        try:
            return await KeyVerifier(redis).authenticate(token)
        finally:
            await redis.aclose()

    return asyncio.run(check())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_revoke(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "api-keys", "add", "--role", "exit_entry", "--name", "Shanghai EEB desk 4",
                         "--redis", redis_url)
    assert code == 0, err
    created = orjson.loads(out)
    assert created["role"] == "exit_entry"
    token, key_id = created["token"], created["key_id"]
    assert token.startswith(f"pvk_{key_id}_")
    assert "shown this once" in err
    caller = authenticate(redis_url, token)
    assert (caller.key_id, caller.role.value, caller.name) == (key_id, "exit_entry", "Shanghai EEB desk 4")

    code, out, _ = run(capsys, "api-keys", "add", "--role", "partner", "--name", "HR platform",
                       "--employer", EMPLOYER, "--full-fields", "--redis", redis_url)
    assert code == 0
    partner = orjson.loads(out)
    assert authenticate(redis_url, partner["token"]).employers == frozenset({EMPLOYER})

    code, out, _ = run(capsys, "api-keys", "list", "--json", "--redis", redis_url)
    assert code == 0
    listed = {k["key_id"]: k for k in map(orjson.loads, out.splitlines())}
    assert set(listed) == {key_id, partner["key_id"]}
    assert listed[partner["key_id"]]["employers"] == [EMPLOYER]
    assert listed[partner["key_id"]]["full_fields"] is True
    assert listed[key_id]["revoked"] is None
    assert token not in out and token.split("_", 2)[2] not in out  # never the secret (it may hold "_" itself)

    code, out, _ = run(capsys, "api-keys", "list", "--redis", redis_url)
    assert code == 0
    assert key_id in out and "Shanghai EEB desk 4" in out and EMPLOYER in out

    code, _, err = run(capsys, "api-keys", "revoke", key_id, "--redis", redis_url)
    assert code == 0, err
    assert authenticate(redis_url, token) is None
    code, _, _ = run(capsys, "api-keys", "revoke", key_id, "--redis", redis_url)
    assert code == 1  # no live key of that id any more
    code, out, _ = run(capsys, "api-keys", "list", "--json", "--redis", redis_url)
    assert {k["key_id"]: k["revoked"] for k in map(orjson.loads, out.splitlines())}[key_id] is not None

    # Revoking by the whole token works too (an operator may only have that).
    code, _, _ = run(capsys, "api-keys", "revoke", partner["token"], "--redis", redis_url)
    assert code == 0
    assert authenticate(redis_url, partner["token"]) is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--role", "superuser", "--name", "x"], "unknown role"),
        (["--role", "partner", "--name", "x"], "at least one employer"),
        (["--role", "partner", "--name", "x", "--employer", "not-a-code"], "18 characters"),
        (["--role", "admin", "--name", "x", "--employer", EMPLOYER], "only partner keys"),
    ],
)
def test_add_refuses_bad_keys(redis_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = run(capsys, "api-keys", "add", *args, "--redis", redis_url)
    assert code == 2
    assert message in err
    assert out == ""


def test_no_redis_url_is_a_usage_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    code, _, err = run(capsys, "api-keys", "list")
    assert code == 2
    assert "REDIS_URL" in err


def test_unreachable_redis_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    from verifier.lib.redis_server import free_port

    code, _, err = run(capsys, "api-keys", "list", "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert code == 2  # at the start of a command: a usage error (issue 11), one line
    assert "Redis" in err and "cannot be reached" in err and len(err.strip().splitlines()) == 1


def test_create_takes_an_organisation_and_add_stays_its_alias(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:  # create needs it (argparse's usage error)
        main(["api-keys", "create", "--role", "exit_entry", "--name", "desk 12", "--redis", redis_url])
    assert usage.value.code == 2 and "--organisation" in capsys.readouterr().err
    code, out, err = run(capsys, "api-keys", "create", "--role", "essc_platform", "--name", "e-card gateway 1",
                         "--organisation", "National e-card platform", "--redis", redis_url)
    assert code == 0, err
    created = orjson.loads(out)
    assert created["organisation"] == "National e-card platform"
    caller = authenticate(redis_url, created["token"])
    assert (caller.role.value, caller.organisation) == ("essc_platform", "National e-card platform")
    # add: the same command; without --organisation the key's name is its organisation
    code, out, _ = run(capsys, "api-keys", "add", "--role", "admin", "--name", "ops desk", "--redis", redis_url)
    assert code == 0
    assert authenticate(redis_url, orjson.loads(out)["token"]).organisation == "ops desk"
    code, out, _ = run(capsys, "api-keys", "list", "--json", "--redis", redis_url)
    assert {k["organisation"] for k in map(orjson.loads, out.splitlines())} == {"National e-card platform", "ops desk"}
    code, _, err = run(capsys, "api-keys", "create", "--role", "admin", "--name", "x", "--organisation", " ",
                       "--redis", redis_url)
    assert code == 2 and "organisation" in err


def test_terminals_register_rename_and_list(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    org = "Shanghai Exit-Entry Administration"
    code, _, err = run(capsys, "terminals", "register", "--organisation", org, "--id", "PVG-T2-12", "--name", "Desk 12",
                       "--place", "Pudong airport, T2 arrivals", "--redis", redis_url)
    assert code == 2 and "no API key was made for the organisation" in err  # a typo is not a new organisation
    assert run(capsys, "api-keys", "create", "--role", "exit_entry", "--name", "desk 12", "--organisation", org,
               "--redis", redis_url)[0] == 0
    code, out, err = run(capsys, "terminals", "register", "--organisation", org, "--id", "PVG-T2-12", "--name",
                         "Desk 12", "--place", "Pudong airport, T2 arrivals", "--redis", redis_url)
    assert code == 0, err
    assert orjson.loads(out)["name"] == "Desk 12" and "registered" in err
    code, _, err = run(capsys, "terminals", "register", "--organisation", org, "--id", "PVG-T2-12", "--name",
                       "Desk 12A", "--place", "Pudong airport, T2 arrivals", "--redis", redis_url)
    assert code == 0 and "renamed" in err
    code, _, err = run(capsys, "terminals", "register", "--organisation", org, "--id", "bad id!", "--name", "x",
                       "--place", "y", "--redis", redis_url)
    assert code == 2 and "terminal id" in err
    code, out, _ = run(capsys, "terminals", "list", "--json", "--redis", redis_url)
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert [(t["organisation"], t["id"], t["name"], t["place"]) for t in listed] == [
        (org, "PVG-T2-12", "Desk 12A", "Pudong airport, T2 arrivals")]
    code, out, _ = run(capsys, "terminals", "list", "--redis", redis_url)
    assert "Desk 12A" in out and org in out
