"""Load scenarios of the permit verification service, one user class per kind of caller.

    python3 loadtests/make_data.py --info .state/demo-info.json
    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000

- ``ExitEntryOfficer``: scans WP1 notices (mostly the same few codes again, some
  never seen before) and reads physical cards (challenge, the chip signs, verify).
- ``ServiceHallClerk``: scans ES1 dynamic codes, each minted fresh by the e-card
  app (the simulator's issuing endpoint stands in for it), and reads cards.
- ``SocialInsuranceAgent``: manual verifications (permit number + date of birth)
  and look-ups by permit, social security and card number.
- ``PartnerSystem``: bulk look-ups of 1,000 permit numbers.

Every answer's body is checked: a verdict other than the code the data says is a
failure, and so is a look-up that finds another count. Requests are grouped by
``name=``; those to the simulator are named ``simulator: ...`` and left out of the
SLO. At exit, the SLO over the API's requests (p99 latency, failure ratio) decides
the exit code: 0 when met, 1 when not (see README.md).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, between, constant_throughput, events, task
from locust.env import Environment
from locust.stats import StatsEntry

from verifier.issuing import SoftwareCard

# ``locust -f loadtests/locustfile.py`` puts this folder on the path, not the
# repository: the answer checks are the package's, shared with the open-model generator.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtests import checks  # noqa: E402

log = logging.getLogger("loadtests")

# Filled from --data-dir when locust starts (events.init), read by every user.
DATA: dict[str, Any] = {}
# Answers that a lifecycle event made since the data was minted explains (only counted
# as successes with --count-changed-permits-as-ok; a strict run fails them).
CHANGED_SINCE_MINTED = frozenset({"SUPERSEDED", "PERMIT_CANCELLED", "CARD_INVALID"})
changed_since_minted = 0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--data-dir", default=".state/loadtest", help="where make_data.py wrote the data")
    parser.add_argument("--slo-p99-ms", type=float, default=250.0, help="p99 latency bound of the API's requests")
    parser.add_argument("--slo-fail-ratio", type=float, default=0.001, help="failure ratio bound (0.001 = 0.1 %%)")
    parser.add_argument("--pace", type=float, default=10.0,
                        help="requests/s of one officer, clerk or agent (partners: one bulk look-up per 4 s)")
    parser.add_argument("--count-changed-permits-as-ok", action="store_true", default=False,
                        help="LENIENT: a VALID-expected code answered SUPERSEDED, PERMIT_CANCELLED or CARD_INVALID "
                        "(a lifecycle event since minting) is not a failure; counted and reported instead")


def _ndjson(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@events.init.add_listener
def _load_data(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    folder = Path(options.data_dir if options is not None else ".state/loadtest")
    meta = json.loads((folder / "meta.json").read_text())
    DATA.update(
        meta=meta,
        keys=json.loads((folder / "keys.json").read_text()),
        wp1_hot=_ndjson(folder / "wp1_hot.ndjson"),
        wp1_cold=_ndjson(folder / "wp1_cold.ndjson"),
        cards=_ndjson(folder / "cards.ndjson"),
        es1=_ndjson(folder / "es1.ndjson"),
        manual=_ndjson(folder / "manual.ndjson"),
        partner=_ndjson(folder / "partner.ndjson"),
        lenient=bool(options is not None and options.count_changed_permits_as_ok),
    )
    if environment.host is None:
        environment.host = meta["url"]
    pace = options.pace if options is not None else 10.0
    for user in (ExitEntryOfficer, ServiceHallClerk, SocialInsuranceAgent):
        user.wait_time = constant_throughput(pace)
    PartnerSystem.wait_time = constant_throughput(0.25)


_key_counters: dict[str, itertools.count[int]] = {}


def _next_key(role: str) -> str:
    """Keys of a role handed out in turn: each simulated user is one terminal of one agency."""
    counter = _key_counters.setdefault(role, itertools.count())
    pool = DATA["keys"][role]
    return str(pool[next(counter) % len(pool)])


class _Caller(FastHttpUser):
    abstract = True
    role = ""
    wait_time = between(0.05, 0.15)  # replaced by --pace at init

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {_next_key(self.role)}", "Content-Type": "application/json"}
        self.terminal = f"lt-{self.role}-{random.getrandbits(32):08x}"

    def expect_verdict(self, path: str, body: dict[str, Any], expect: str, name: str) -> None:
        global changed_since_minted
        with self.client.post(path, data=orjson.dumps(body), headers=self.headers, name=name,
                              catch_response=True) as reply:
            result, failure = checks.verdict_result(reply.status_code, reply.content or b"")
            if failure is not None:
                reply.failure(failure)
            elif result == expect:
                reply.success()
            elif DATA["lenient"] and expect == "VALID" and result in CHANGED_SINCE_MINTED:
                changed_since_minted += 1
                reply.success()
            else:
                reply.failure(checks.verdict_failure(reply.status_code, reply.content, expect))

    def expect_found(self, body: dict[str, Any], found: int, name: str) -> None:
        with self.client.post("/v1/permits/lookup", data=orjson.dumps(body), headers=self.headers, name=name,
                              catch_response=True) as reply:
            failure = checks.found_failure(reply.status_code, reply.content or b"", len(body["ids"]), found)
            if failure is not None:
                reply.failure(failure)

    def card_read(self) -> None:
        card = random.choice(DATA["cards"])
        with self.client.post("/v1/cards/challenge", data=b"{}", headers=self.headers,
                              name="/v1/cards/challenge", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}")
                return
            challenge_b64 = orjson.loads(reply.content)["challenge"]
        # The chip signs the challenge: done here, on the terminal, as a real card would.
        signature = SoftwareCard.from_seed(bytes.fromhex(card["card_seed"])).sign_challenge(
            base64.b64decode(challenge_b64))
        self.expect_verdict("/v1/verify/card", {
            "certificate": card["certificate"], "challenge": challenge_b64,
            "signature": base64.b64encode(signature).decode(), "terminal": self.terminal,
        }, card["expect"], "/v1/verify/card")


class ExitEntryOfficer(_Caller):
    """Exit-entry departments: WP1 notices, mostly the same codes again (cache hits), some cold."""

    weight = 5
    role = "exit_entry"

    def on_start(self) -> None:
        super().on_start()
        cold = DATA["wp1_cold"]
        # Each officer walks the cold codes from its own place, so a code is seldom seen twice.
        start = random.randrange(len(cold))
        self.cold = itertools.cycle(cold[start:] + cold[:start])

    @task(7)
    def scan_repeat(self) -> None:
        row = random.choice(DATA["wp1_hot"])
        self.expect_verdict("/v1/verify/qr", {"qr": row["qr"], "terminal": self.terminal}, row["expect"],
                            "/v1/verify/qr [WP1 repeat]")

    @task(2)
    def scan_cold(self) -> None:
        row = next(self.cold)
        self.expect_verdict("/v1/verify/qr", {"qr": row["qr"], "terminal": self.terminal}, row["expect"],
                            "/v1/verify/qr [WP1 cold]")

    @task(1)
    def read_card(self) -> None:
        self.card_read()


class ServiceHallClerk(_Caller):
    """Service halls: ES1 dynamic codes from the e-card app (fresh per scan), and card reads."""

    weight = 2
    role = "service_hall"

    @task(4)
    def scan_es1(self) -> None:
        row = random.choice(DATA["es1"])
        upstream = DATA["meta"]["upstream"]
        with self.client.post(f"{upstream}/issue/es1", data=orjson.dumps({"pn": row["pn"], "lifetime": 60}),
                              headers={"Content-Type": "application/json"},
                              name="simulator: e-card app mints ES1", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}")
                return
            code = orjson.loads(reply.content)["qr"]
        self.expect_verdict("/v1/verify/qr", {"qr": code, "terminal": self.terminal}, row["expect"],
                            "/v1/verify/qr [ES1 fresh]")

    @task(1)
    def read_card(self) -> None:
        self.card_read()


class SocialInsuranceAgent(_Caller):
    """Social insurance agencies: manual verifications and look-ups by pn, ssn and cn."""

    weight = 2
    role = "social_insurance"

    @task(3)
    def manual(self) -> None:
        row = random.choice(DATA["manual"])
        self.expect_verdict("/v1/verify/manual", {"pn": row["pn"], "dob": row["dob"], "terminal": self.terminal},
                            row["expect"], "/v1/verify/manual")

    @task(2)
    def permit_by_number(self) -> None:
        row = random.choice(DATA["manual"])
        with self.client.get(f"/v1/permits/{row['pn']}", headers=self.headers, name="/v1/permits/{pn}",
                             catch_response=True) as reply:
            failure = checks.permit_failure(reply.status_code, reply.content or b"", row["pn"])
            if failure is not None:
                reply.failure(failure)

    @task(1)
    def lookup_by_ssn_and_cn(self) -> None:
        rows = random.sample(DATA["manual"], min(10, len(DATA["manual"])))
        by = random.choice(("ssn", "cn"))
        self.expect_found({"by": by, "ids": [r[by] for r in rows]}, len(rows), f"/v1/permits/lookup [{by} x10]")

class PartnerSystem(_Caller):
    """Partner systems (HR platforms): bulk look-ups of 1,000 permit numbers, own employers' only."""

    weight = 1
    role = "partner"

    def on_start(self) -> None:
        super().on_start()
        self.lookup = random.choice(DATA["partner"])
        # The partner key bound to the employer whose permits this look-up holds.
        self.headers["Authorization"] = f"Bearer {DATA['keys']['partner'][self.lookup['key_index']]}"

    @task
    def bulk_lookup(self) -> None:
        self.expect_found({"by": "pn", "ids": self.lookup["ids"]}, self.lookup["expect_found"],
                          "/v1/permits/lookup [pn x1000]")


# -- the SLO ------------------------------------------------------------------------


def api_totals(environment: Environment) -> StatsEntry:
    """All requests to the API (names starting /v1/) as one entry: the simulator's are not ours."""
    total = StatsEntry(environment.stats, "API total", None, use_response_times_cache=False)
    for entry in environment.stats.entries.values():
        if entry.name.startswith("/v1/"):
            total.extend(entry)
    return total


@events.quitting.add_listener
def _slo(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    p99_bound = options.slo_p99_ms if options is not None else 250.0
    fail_bound = options.slo_fail_ratio if options is not None else 0.001
    total = api_totals(environment)
    p99 = total.get_response_time_percentile(0.99) if total.num_requests else 0.0
    verdict = []
    if total.num_requests == 0:
        verdict.append("no API request was made")
    if total.fail_ratio > fail_bound:
        verdict.append(f"failure ratio {total.fail_ratio:.4%} > {fail_bound:.4%}")
    if p99 > p99_bound:
        verdict.append(f"p99 {p99:.0f} ms > {p99_bound:.0f} ms")
    summary = (f"SLO over {total.num_requests} API requests: {total.total_rps:.0f} req/s, "
               f"p50 {total.get_response_time_percentile(0.5) or 0:.0f} ms, p99 {p99 or 0:.0f} ms, "
               f"failures {total.num_failures} ({total.fail_ratio:.4%})")
    if changed_since_minted:
        summary += f"; {changed_since_minted} answers changed by lifecycle events counted as OK (lenient)"
    if verdict:
        log.error("%s: NOT MET (%s)", summary, "; ".join(verdict))
        environment.process_exit_code = 1
    else:
        log.info("%s: met", summary)
        environment.process_exit_code = 0
