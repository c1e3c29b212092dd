"""The demo as an operator meets it: JSON logs with no personal data in them, and processes that come back.

One demo (``--log-format json --log-level debug``) serves the module:

1. a realistic set of requests (QR verifies of every kind, a card read through the card
   bridge, look-ups by permit, social security and card number, the holder calls, the
   real-name match, a webhook subscription and deliveries) against the real parts; then
   every line the processes logged (the demo's stderr and every file in its log folder)
   must be a JSON line, and none may hold any demo SSN, card number, permit number or name
   (the whole simulated population, from its snapshot);
2. every child is killed with SIGKILL in turn (the index's Redis, the store's Redis, the
   sync job, the upstream simulator, the status-list writer, the API, the notifier, the webhook
   receiver, the card bridge): the demo says so in one line (which, exit code, restart count), starts it
   again, and the demo answers its samples again; Ctrl-C still reaps every process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.run.conftest import DEMO_READY_TIMEOUT_S, REPO, child_env
from tests.run.procs import alive, descendants, stop_tree, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RECOVERY_TIMEOUT_S = 90.0


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    stdout: Path
    stderr: Path
    state: Path

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.info['keys'][role]}"}

    def send(self, name: str, **changes: Any) -> httpx.Response:
        sample = self.info["samples"][name]
        body = {**sample["body"], **changes} if sample["body"] is not None else None
        return httpx.request(sample["method"], self.info["url"] + sample["path"], json=body,
                             headers=self.headers(sample["role"]), timeout=10.0)

    def log_lines(self) -> list[tuple[str, str]]:
        """(file name, line) of every line any process logged."""
        lines = [("demo stderr", line) for line in self.stderr.read_text(errors="replace").splitlines()]
        for path in sorted(Path(self.info["logs"]).glob("*.log")):
            lines += [(path.name, line) for line in path.read_text(errors="replace").splitlines()]
        return lines

    def restart_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr.read_text(errors="replace").splitlines():
            try:
                shown = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if shown.get("logger") == "verifier.demo" and "exit_code" in shown:
                out.append(shown)
        return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo-ops")
    info_file, stdout, stderr = tmp / "info.json", tmp / "stdout.txt", tmp / "stderr.txt"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "verifier", "demo", "--port", "0", "--info", str(info_file), "--state-dir",
             str(tmp / "state"), "--permits", "150", "--event-rate", "0", "--log-format", "json",
             "--log-level", "debug"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO, env=child_env())
    try:
        try:
            wait_for(info_file.exists, DEMO_READY_TIMEOUT_S, "the demo's info file", process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stdout.read_text()[-3000:]}\n{stderr.read_text()[-3000:]}") from None
        yield Demo(process, json.loads(info_file.read_text()), stdout, stderr, tmp / "state")
    finally:
        stop_tree(process, descendants(process.pid))


def population(upstream: str) -> set[str]:
    """Every SSN, card number, permit number and name of the simulated population (and dates of birth)."""
    terms: set[str] = set()
    snapshot = httpx.get(upstream + "/snapshot", params={"format": "ndjson"}, timeout=60)
    for line in snapshot.text.splitlines():
        record = orjson.loads(line)
        if not isinstance(record, list):
            continue  # header, trailer
        pn, name, _nat, dob = record[0], record[1], record[2], record[3]
        ssn, cards = record[10] if len(record) > 10 else None, record[11] if len(record) > 11 else []
        terms |= {pn, name, dob, *(c[0] for c in cards)}
        if ssn:
            terms.add(ssn)
    return terms


def realistic_requests(demo: Demo) -> None:
    """What the service's users do in a day, each answered as expected (else the test proves little)."""
    info, url = demo.info, demo.info["url"]
    assert demo.send("valid").json()["result"] == "VALID"
    assert demo.send("cancelled").json()["result"] == "PERMIT_CANCELLED"
    assert demo.send("tampered").json()["result"] in ("BAD_SIGNATURE", "MALFORMED")
    assert demo.send("manual").json()["result"] == "VALID"
    assert demo.send("es1").json()["result"] == "VALID"
    assert demo.send("es1", terminal="another-terminal").json()["result"] == "REPLAYED"
    assert demo.send("lookup").status_code == 200
    pn = info["samples"]["manual"]["body"]["pn"]
    admin, insurance = demo.headers("admin"), demo.headers("social_insurance")
    permit = httpx.get(f"{url}/v1/permits/{pn}", headers=admin, timeout=10).json()["permit"]
    record = httpx.get(f"{info['upstream']}/permits/{pn}", timeout=10).json()
    ssn, cn = record[10], record[11][-1][0]
    assert permit["pn"] == pn
    for by, ids in (("ssn", [ssn, "9" + "0" * 18]), ("cn", [cn]), ("pn", [pn, "WP1999999999999999"])):
        answer = httpx.post(f"{url}/v1/permits/lookup", json={"by": by, "ids": ids}, headers=insurance, timeout=10)
        assert answer.status_code == 200 and answer.json()["found"], (by, answer.text)
    # a card read: the API's challenge, signed by the bridge's card (the valid permit's), verified
    exit_entry = demo.headers("exit_entry")
    challenge = httpx.post(f"{url}/v1/cards/challenge", headers=exit_entry, timeout=10).json()["challenge"]
    read = httpx.post(info["card_bridge"] + "/v1/sign", json={"challenge": challenge}, headers={"Origin": url},
                      timeout=10).json()
    card = httpx.post(f"{url}/v1/verify/card", headers=exit_entry, timeout=10, json={
        "certificate": read["certificate"], "challenge": challenge, "signature": read["signature"],
        "terminal": "DESK-1"}).json()
    assert card["result"] == "VALID" and len(base64.b64decode(read["signature"])) == 64
    # the holder calls, as the banner prints them, and the real-name match
    if shutil.which("curl"):
        flow = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(info["holder_flow"])],
                              capture_output=True, cwd=demo.state, timeout=60, text=True)
        assert flow.returncode == 0 and flow.stdout.splitlines()[-1] == "204", flow.stderr
    platform = demo.headers("essc_platform")
    for name in (record[1], "NOBODY ATALL"):
        match = httpx.post(f"{url}/v1/holder/match", headers=platform, timeout=10,
                           json={"pn": pn, "name": name, "dob": record[3]})
        assert match.status_code == 200, match.text
    # webhooks: a partner subscribes; changes to permits are delivered to the demo's receiver
    partner = httpx.post(f"{url}/v1/webhooks", headers=demo.headers("partner"), timeout=10,
                         json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    assert partner.status_code == 201, partner.text
    others = [p for p in (r[0] for r in _records(info["upstream"])) if p not in _sample_permits(info)][:3]
    for other, kind in zip(others, ("cancel", "extend", "change")):
        httpx.post(info["upstream"] + "/admin/events", json={"type": kind, "pn": other}, timeout=10).raise_for_status()
    receiver_log = Path(info["logs"]) / "receiver.log"
    wait_for(lambda: receiver_log.read_text().count('"event_type"') >= 3, 60, "three deliveries at the receiver")
    # a request id of the caller's own comes back
    assert demo.send("valid").headers["x-request-id"]


def _records(upstream: str) -> list[list[Any]]:
    text = httpx.get(upstream + "/snapshot", params={"format": "ndjson"}, timeout=60).text
    return [r for r in map(orjson.loads, text.splitlines()) if isinstance(r, list)]


def _sample_permits(info: dict[str, Any]) -> set[str]:
    return set(info["samples"]["lookup"]["body"]["ids"]) | {info["samples"]["manual"]["body"]["pn"]}


def test_every_log_line_is_json_and_names_nobody(demo: Demo) -> None:
    realistic_requests(demo)
    time.sleep(1.0)  # the audit's flush and the deliveries' log lines
    terms = population(demo.info["upstream"])
    assert len(terms) > 400  # 150 permits: numbers, names, cards
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)))
    lines = demo.log_lines()
    assert len(lines) > 50 and {"api.log", "sync.log", "notify.log", "card-bridge.log"} <= {n for n, _ in lines}
    not_json, leaks = [], []
    for name, line in lines:
        try:
            shown = orjson.loads(line)
            assert isinstance(shown, dict) and {"ts", "level", "logger", "msg"} <= set(shown)
        except (orjson.JSONDecodeError, AssertionError):
            not_json.append(f"{name}: {line[:200]}")
        found = pattern.search(line)
        if found:
            leaks.append(f"{name}: {found.group(0)!r} in {line[:300]}")
    assert not leaks, "\n".join(leaks[:20])
    assert not not_json, "\n".join(not_json[:20])
    # the requests were logged at DEBUG, with their ids and route templates
    requests = [orjson.loads(line) for name, line in lines if name == "api.log" and '"verifier.api.requests"' in line]
    assert any(r["route"] == "/v1/permits/{pn}" and len(r["request_id"]) == 32 for r in requests)


# The children, by name, and what shows that each is back.
CHILDREN = ("redis", "store", "sync", "upstream", "status-lists", "api", "notify", "receiver", "card-bridge")


def _child_pids(demo: Demo) -> dict[str, int]:
    """The demo's direct children by name (from their command lines)."""
    found: dict[str, int] = {}
    for pid, _start in descendants(demo.process.pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) != demo.process.pid:
            continue
        words = [w.decode() for w in argv if w]
        if "verifier.run.private_redis" in words:
            found[Path(words[words.index("--state-dir") + 1]).name] = pid
        elif "-m" in words and words[words.index("-m") + 1] == "verifier":
            command = words[words.index("-m") + 2:]
            name = {"serve": "api", "notify": "receiver" if command[1:2] == ["receiver"] else "notify",
                    "status-lists": "status-lists"}.get(command[0], command[0])
            found[name] = pid
    return found


def test_every_child_killed_comes_back_and_the_demo_answers(demo: Demo) -> None:
    info = demo.info
    before = _child_pids(demo)
    assert set(CHILDREN) <= set(before), before
    for restarts, name in enumerate(CHILDREN, start=1):
        old = _child_pids(demo)[name]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: any(r["child"] == name for r in demo.restart_lines()), 30, f"the demo's line on {name}",
                 demo.process)
        line = next(r for r in demo.restart_lines() if r["child"] == name)
        assert line["exit_code"] == -9 and line["restarts"] == 1 and "SIGKILL" in line["msg"], line
        wait_for(lambda: _child_pids(demo).get(name, old) != old, RECOVERY_TIMEOUT_S, f"{name} started again",
                 demo.process)

        def answers() -> bool:
            try:
                return demo.send("valid").json().get("result") == "VALID"
            except (httpx.HTTPError, ValueError):
                return False

        wait_for(answers, RECOVERY_TIMEOUT_S, f"a VALID answer after {name} was killed", demo.process)
        if name == "card-bridge":
            wait_for(lambda: _ok(info["card_bridge"] + "/v1/status", {"Origin": info["url"]}), 30, "the bridge")
        if name == "status-lists":
            assert _ok(info["url"] + "/v1/status-lists/permits")
        assert len(demo.restart_lines()) == restarts
        # the info file names the new process (a stale pid could be reused by another one)
        wait_for(lambda: _info(demo).get("pids", {}).get(name) == _child_pids(demo)[name], 10, "the info file's pid")
        assert _info(demo)["restarts"][name] == 1
    # keys survived the store's restart; the stored audit too (a look-up by admin still works)
    assert httpx.get(f"{info['url']}/v1/admin/sync", headers=demo.headers("admin"), timeout=10).status_code == 200
    tree = descendants(demo.process.pid)
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=90) == 0
    wait_for(lambda: not alive(tree), 30, "every process of the demo to exit")


def _info(demo: Demo) -> dict[str, Any]:
    try:
        return json.loads((demo.state.parent / "info.json").read_text())
    except (OSError, ValueError):  # between the write and the rename: never, but a reader may race
        return {}


def _ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=5).is_success
    except httpx.HTTPError:
        return False
