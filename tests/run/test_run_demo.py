"""``verifier demo`` end to end: a real subprocess, real HTTP, real Redis, real signals."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.run.conftest import REPO, RunningDemo, child_env
from tests.run.procs import alive, descendants, port_open, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def send(demo: RunningDemo, name: str, **changes: object) -> httpx.Response:
    sample = demo.info["samples"][name]
    body = {**sample["body"], **changes} if sample["body"] is not None else None
    return httpx.request(sample["method"], demo.info["url"] + sample["path"], json=body,
                         headers=demo.headers(sample["role"]), timeout=10.0)


def test_demo_serves_its_samples_and_stops_everything_on_sigint(tmp_path: Path, start_demo) -> None:
    started = time.time()
    demo = start_demo(tmp_path, "--permits", "400", "--event-rate", "0")
    info = demo.info

    # What the info file promises: the URL, one key per role, the upstream, both Redis servers, the samples.
    assert info["redis"] != info["store"] and info["store"].startswith("redis://127.0.0.1:")
    assert set(info["keys"]) == {"exit_entry", "service_hall", "social_insurance", "partner", "admin",
                                 "essc_platform"}
    assert all(token.startswith("pvk_") for token in info["keys"].values())
    assert info["upstream"].startswith("http://127.0.0.1:")
    assert {"valid", "cancelled", "tampered", "es1", "manual", "lookup"} <= set(info["samples"])
    printed = demo.output_text()
    assert info["samples"]["valid"]["curl"] in printed
    assert info["keys"]["admin"] in printed

    verdict = send(demo, "valid").json()
    assert verdict["result"] == "VALID", verdict
    assert verdict["profile"] == "WP1"
    assert send(demo, "cancelled").json()["result"] == "PERMIT_CANCELLED"
    assert send(demo, "tampered").json()["result"] in ("BAD_SIGNATURE", "MALFORMED")
    manual = send(demo, "manual").json()
    assert (manual["result"], manual["profile"]) == ("VALID", "MANUAL")
    # An ES1 code is good once; the same code from another terminal is a replay: the two
    # commands printed for it, pasted in turn, say what their labels say.
    assert f"# es1_again: {info['samples']['es1_again']['note']} -> REPLAYED" in printed
    assert info["samples"]["es1_again"]["curl"] in printed
    for name, expected in (("es1", "VALID"), ("es1_again", "REPLAYED")):
        if shutil.which("curl"):
            pasted = subprocess.run(info["samples"][name]["curl"], shell=True, capture_output=True, timeout=30)
            assert orjson.loads(pasted.stdout)["result"] == expected, (name, pasted.stdout)
        else:
            assert send(demo, name).json()["result"] == expected
    lookup = send(demo, "lookup")
    assert lookup.status_code == 200
    valid_pn, cancelled_pn = info["samples"]["lookup"]["body"]["ids"]
    # The partner key is bound to the valid permit's employer only: it sees the other
    # permit only if that one happens to have the same employer.
    employer = {pn: httpx.get(f"{info['url']}/v1/permits/{pn}", headers=demo.headers("admin"), timeout=10)
                .json()["permit"]["emp"] for pn in (valid_pn, cancelled_pn)}
    shared = employer[cancelled_pn] == employer[valid_pn]
    assert [f["id"] for f in lookup.json()["found"]] == [valid_pn] + ([cancelled_pn] if shared else [])
    assert lookup.json()["missing"] == ([] if shared else [cancelled_pn])

    # The pasted curl command works as printed.
    if shutil.which("curl"):  # on the project's machines it is; the rest of the test does not need it
        curl = subprocess.run(info["samples"]["valid"]["curl"], shell=True, capture_output=True, timeout=30)
        assert orjson.loads(curl.stdout)["result"] == "VALID"

    # The holder flow, pasted into one shell as printed: sign-in, permit, notice, who verified me, sign-out.
    assert "\n".join(info["holder_flow"]) in printed
    if shutil.which("curl"):
        flow = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(info["holder_flow"])],
                              capture_output=True, cwd=tmp_path, timeout=60, text=True)
        assert flow.returncode == 0, flow.stderr
        permit_out, verifications, status = flow.stdout.splitlines()
        assert orjson.loads(permit_out)["permit"]["pn"] == valid_pn
        assert (tmp_path / "notice.pdf").read_bytes().startswith(b"%PDF-1.4")
        kinds = {(item["kind"], item["result"]) for item in orjson.loads(verifications)["items"]}
        assert {("qr", "VALID"), ("manual", "VALID")} <= kinds  # the samples sent above (the sign-in may not be
        # flushed yet: the audit goes out every 0.25 s)
        assert status == "204"

    # The card read, pasted into one shell as printed: challenge, the bridge's card signs, the verdict.
    assert "\n".join(info["card_read_flow"]) in printed
    if shutil.which("curl"):
        read = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(info["card_read_flow"])],
                              capture_output=True, cwd=tmp_path, timeout=60, text=True)
        assert read.returncode == 0, read.stderr
        card_verdict = orjson.loads(read.stdout)
        assert (card_verdict["result"], card_verdict["profile"]) == ("VALID", "CARD"), card_verdict

    # The management commands find the demo's Redis as the demo does (its state folder), with no URL given.
    found = subprocess.run([sys.executable, "-m", "verifier", "api-keys", "list", "--json"], capture_output=True,
                           cwd=tmp_path, env={**child_env(), "VERIFIER_STATE_DIR": str(tmp_path / "state")},
                           timeout=60, text=True)
    assert found.returncode == 0, found.stderr
    assert "using the running demo's Redis" in found.stderr and info["store"] in found.stderr
    assert info["key_ids"]["admin"] in found.stdout

    # The verifications above reached the audit stream, under the exit_entry key.
    def audited() -> list[dict[str, object]]:
        export = subprocess.run(
            [sys.executable, "-m", "verifier", "audit", "export", "--since", str(int(started) - 1),
             "--store", info["store"]], capture_output=True, cwd=REPO, env=child_env(), timeout=60,
        )
        assert export.returncode == 0, export.stderr
        return [orjson.loads(line) for line in export.stdout.splitlines()]

    wait_for(lambda: any(r["permit_number"] == valid_pn and r["result"] == "VALID" for r in audited()),
             15, "the audit record of the VALID scan")
    exit_entry_id = info["key_ids"]["exit_entry"]
    assert any(r["key_id"] == exit_entry_id and r["result"] == "PERMIT_CANCELLED" for r in audited())

    # Offline, as the banner prints it: fetch the bundle, then the valid sample verifies with it
    # alone (its status claim points into the demo's own lists), the cancelled one does not.
    offline = tmp_path / "offline"
    fetch = subprocess.run([sys.executable, "-m", "verifier", "offline", "fetch", "--from", info["url"], "--dir",
                            str(offline)], capture_output=True, cwd=REPO, env=child_env(), timeout=60, text=True)
    assert fetch.returncode == 0, fetch.stderr
    assert "verifier offline verify --dir" in printed
    for name, expected in (("valid", 0), ("cancelled", 1)):
        verify = subprocess.run([sys.executable, "-m", "verifier", "offline", "verify", "--dir", str(offline),
                                 "--json", info["samples"][name]["body"]["qr"]], capture_output=True, cwd=REPO,
                                env=child_env(), timeout=60)
        shown = orjson.loads(verify.stdout)
        assert verify.returncode == expected, (name, shown)
        assert shown["result"] == ("VALID" if expected == 0 else "PERMIT_CANCELLED") and shown["lag_s"] is not None

    # The notifier delivers changes to the demo's receiver, which checks their signatures.
    assert "tail -f" in printed and info["webhook"]["url"] in printed
    httpx.post(info["upstream"] + "/admin/events", json={"type": "cancel", "pn": valid_pn},
               timeout=10).raise_for_status()
    receiver_log = Path(info["logs"]) / "receiver.log"
    wait_for(lambda: "permit.cancelled" in receiver_log.read_text(errors="replace"), 60,
             "the cancellation at the demo's receiver")
    delivered = [line for line in receiver_log.read_text().splitlines() if "permit.cancelled" in line]
    assert "signature=v1,v1a" in delivered[0] and valid_pn not in receiver_log.read_text()

    # Ctrl-C: every process it started is gone, every port closed, the keys file removed.
    tree = demo.tree | descendants(demo.process.pid)
    names = set(info["pids"])
    assert {"redis", "store", "upstream", "sync", "status-lists", "api", "notify", "receiver"} <= names
    assert len(tree) >= 11  # two redis helpers + servers, upstream, sync, status lists, notify, receiver, serve + 2 workers
    assert demo.interrupt(signal.SIGINT) == 0
    wait_for(lambda: not alive(tree), 30, "every child of the demo to exit")
    for url in (info["url"], info["upstream"], info["redis"], info["store"]):
        assert not port_open(url), url
    assert not demo.info_file.exists()
    assert "stopped." in demo.output_text()


def test_demo_keys_of_an_earlier_run_are_revoked(tmp_path: Path, start_demo) -> None:
    """The state folder (and Redis data) is kept between runs; the old printed keys stop working."""
    first = start_demo(tmp_path, "--permits", "200", "--event-rate", "0")
    old_admin = first.headers("admin")
    assert first.interrupt() == 0
    second = start_demo(tmp_path, "--permits", "200", "--event-rate", "0")
    url = second.info["url"] + "/v1/admin/sync"
    assert httpx.get(url, headers=second.headers("admin"), timeout=10).status_code == 200
    assert httpx.get(url, headers=old_admin, timeout=10).status_code == 401
    assert second.interrupt(signal.SIGTERM) == 0


def test_sigterm_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    output = tmp_path / "out.txt"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "verifier", "demo", "--port", "0", "--permits", "200",
             "--state-dir", str(tmp_path / "state")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=child_env(),
        )
    tree: set[tuple[int, int]] = set()
    try:
        # Interrupt once the upstream simulator has been launched: Redis is up, the rest is starting.
        wait_for(lambda: (tmp_path / "state" / "logs" / "upstream.log").exists(), 60, "the upstream to launch", process)
        tree = descendants(process.pid)
        assert tree
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, 130)
        wait_for(lambda: not alive(tree | descendants(process.pid)), 30, "every child to exit")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
