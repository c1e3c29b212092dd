"""The scenarios of a step load: who calls, which requests, in which mix, with which expected answers.

A scenario is a weighted mix of *actions*; an action is one arrival (a scan at a
border desk, a card tapped at a service hall, one bulk look-up), made of one or more
requests whose answers are all checked (``checks.py``). A share of each arrival
stream is bad input (``--bad-share``): tampered, expired, foreign-key and unknown-permit
codes, text that is not a code, replayed ES1 codes, wrong dates of birth, chips that
sign with the wrong key, challenges never issued, holder tokens that do not exist,
each with the verdict or problem it must get.

| scenario | role | arrivals |
|---|---|---|
| ``exit_entry`` | exit_entry | WP1 notices (some the same few again, most never seen before) and fresh ES1 codes |
| ``service_hall`` | service_hall | physical card reads: challenge, the chip signs, verify |
| ``manual`` | social_insurance | manual checks: permit number and date of birth |
| ``partner_bulk`` | partner | look-ups of 1,000 permit numbers by an employer's platform |
| ``holder`` | essc_platform | the e-card app on the holder's behalf: sign-in with a fresh ES1, own permit, who verified me |
| ``day_mix`` | all of the above | a day compressed into each step: the mix and the rate follow the hour, morning peak at the border |
| ``probe`` | none | ``GET /health/live``: the generator's own ceiling against a sink (not in the default list) |

To add a scenario: write its actions, add a :class:`Scenario` to :data:`SCENARIOS` with
the roles it needs (it is offered only where ``keys.json`` has a key of each), and,
if it belongs in the day, a column of :data:`DAY`.

The generator calls an action with a :class:`Turn` (its ``send`` times and records
each request); nothing here knows whether the run is open or closed.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from loadtests import checks

Check = Callable[[int, str, bytes], "str | None"]
"""(status, content type, body) -> None when right, else what was wrong."""

JSON = {"Content-Type": "application/json"}


class Turn(Protocol):
    """One arrival as the generator runs it."""

    data: "Data"
    rng: random.Random
    terminal: str
    other_terminal: str

    def send(self, name: str, method: str, path: str, body: bytes | None, role: str, check: Check,
             *, token: str | None = None, headers: dict[str, str] | None = None) -> bytes | None:
        """Send one request with a key of ``role`` (or ``token``); record it under ``name``;
        the body when ``check`` passed, else None."""
        ...


# -- the data a generator process holds ----------------------------------------------


def _ndjson(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@dataclass
class Data:
    """What ``make_data.py`` wrote, plus this process's own pools (ES1 codes to replay, holder tokens)."""

    meta: dict[str, Any]
    keys: dict[str, list[str]]
    wp1_hot: list[dict[str, Any]]
    wp1_cold: list[dict[str, Any]]
    bad: list[dict[str, Any]]
    cards: list[dict[str, Any]]
    es1: list[dict[str, Any]]
    manual: list[dict[str, Any]]
    partner: list[dict[str, Any]]
    twin: Any = None
    cold_codes: Any = None
    """This process's share of the cold WP1 codes, walked in turn."""
    answered_es1: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=2000))
    """ES1 codes this process saw accepted (code, pn): replayed ones must be REPLAYED."""
    holder_tokens: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=2000))
    """Holder sessions this process opened (token, pn)."""
    _chips: dict[str, Any] = field(default_factory=dict)
    _key_turn: dict[str, itertools.count[int]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, share: int = 0, shares: int = 1) -> "Data":
        data = cls(
            meta=json.loads((folder / "meta.json").read_text()),
            keys=json.loads((folder / "keys.json").read_text()),
            wp1_hot=_ndjson(folder / "wp1_hot.ndjson"),
            wp1_cold=_ndjson(folder / "wp1_cold.ndjson"),
            bad=_ndjson(folder / "bad.ndjson"),
            cards=_ndjson(folder / "cards.ndjson"),
            es1=_ndjson(folder / "es1.ndjson"),
            manual=_ndjson(folder / "manual.ndjson"),
            partner=_ndjson(folder / "partner.ndjson"),
        )
        # Each generator process walks its own slice of the cold codes, so that no
        # code is sent twice across the processes (a repeat would be a cache hit).
        mine = data.wp1_cold[share::shares] or data.wp1_cold
        data.cold_codes = itertools.cycle(mine) if mine else None
        return data

    def key(self, role: str) -> str:
        """The keys of a role in turn: many terminals and agencies share the service."""
        turn = self._key_turn.setdefault(role, itertools.count())
        pool = self.keys[role]
        return pool[next(turn) % len(pool)]

    def mint_es1(self, pn: str) -> str:
        """What the e-card app shows right now: a fresh ES1 code (the simulator's twin signs it)."""
        if self.twin is None:
            from verifier.upstream.simulator import Upstream

            twin = self.meta["twin"]
            self.twin = Upstream.create(permits=twin["permits"], seed=twin["seed"],
                                        as_of=dt.date.fromisoformat(twin["as_of"]))
        return str(self.twin.mint_es1(pn, lifetime=60)[0])

    def warm(self) -> None:
        """Make the twin and the chips before the first arrival: a CPU-bound pause later would stall every
        greenlet of the process and show as latency that the service did not cause."""
        if self.es1:
            self.mint_es1(self.es1[0]["pn"])
        for card in self.cards:
            self.chip(card)

    def chip(self, card: dict[str, Any]) -> Any:
        chip = self._chips.get(card["cn"])
        if chip is None:
            from verifier.issuing import SoftwareCard

            chip = self._chips[card["cn"]] = SoftwareCard.from_seed(bytes.fromhex(card["card_seed"]))
        return chip


# -- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    name: str
    run: Callable[[Turn], None]
    requests: float = 1.0
    """Requests per arrival (a card read is a challenge and a verify)."""


def _qr(turn: Turn, name: str, code: str, expect: str, role: str, terminal: str | None = None) -> bytes | None:
    body = orjson.dumps({"qr": code, "terminal": terminal or turn.terminal})
    return turn.send(name, "POST", "/v1/verify/qr", body, role,
                     lambda status, _ct, content: checks.verdict_failure(status, content, expect))


def wp1_repeat(role: str) -> Action:
    def run(turn: Turn) -> None:
        row = turn.rng.choice(turn.data.wp1_hot)
        _qr(turn, "/v1/verify/qr [WP1 repeat]", row["qr"], row["expect"], role)
    return Action("WP1 repeat", run)


def wp1_cold(role: str) -> Action:
    def run(turn: Turn) -> None:
        row = next(turn.data.cold_codes)
        _qr(turn, "/v1/verify/qr [WP1 cold]", row["qr"], row["expect"], role)
    return Action("WP1 cold", run)


def es1_fresh(role: str) -> Action:
    def run(turn: Turn) -> None:
        row = turn.rng.choice(turn.data.es1)
        code = turn.data.mint_es1(row["pn"])
        if _qr(turn, "/v1/verify/qr [ES1 fresh]", code, row["expect"], role) is not None and row["expect"] == "VALID":
            turn.data.answered_es1.append((code, row["pn"]))
    return Action("ES1 fresh", run)


def bad_code(role: str) -> Action:
    def run(turn: Turn) -> None:
        row = turn.rng.choice(turn.data.bad)
        body = orjson.dumps({"qr": row["qr"], "terminal": turn.terminal})
        turn.send("/v1/verify/qr [bad code]", "POST", "/v1/verify/qr", body, role,
                  lambda status, _ct, content: _named(row["kind"], checks.verdict_failure(status, content, row["expect"])))
    return Action("bad code", run)


def es1_replayed(role: str) -> Action:
    """An ES1 code accepted before, scanned again at another desk: REPLAYED (the same desk within 10 s
    would get its first verdict again, as a double read)."""
    def run(turn: Turn) -> None:
        if not turn.data.answered_es1:
            return bad_code(role).run(turn)
        code, _pn = turn.data.answered_es1.popleft()
        _qr(turn, "/v1/verify/qr [ES1 replayed]", code, "REPLAYED", role, terminal=turn.other_terminal)
        return None
    return Action("ES1 replayed", run)


def _named(kind: str, failure: str | None) -> str | None:
    return None if failure is None else f"{kind}: {failure}"


def card_read(role: str, *, chip_key: str = "right") -> Action:
    """Challenge, the chip signs it (here, as on the terminal), verify. ``chip_key="wrong"``: a chip whose
    key is not the certificate's (a cloned certificate): BAD_SIGNATURE."""
    expect_bad = chip_key == "wrong"

    def run(turn: Turn) -> None:
        card = turn.rng.choice(turn.data.cards)
        answer = turn.send("/v1/cards/challenge", "POST", "/v1/cards/challenge", b"{}", role,
                           lambda status, _ct, content: checks.json_answer(status, content)[1])
        if answer is None:
            return
        challenge = orjson.loads(answer)["challenge"]
        message = base64.b64decode(challenge)
        if expect_bad:
            from verifier.issuing import SoftwareCard

            signature = SoftwareCard.from_seed(turn.rng.randbytes(32)).sign_challenge(message)
        else:
            signature = turn.data.chip(card).sign_challenge(message)
        expect = "BAD_SIGNATURE" if expect_bad else card["expect"]
        body = orjson.dumps({"certificate": card["certificate"], "challenge": challenge,
                             "signature": base64.b64encode(signature).decode(), "terminal": turn.terminal})
        turn.send("/v1/verify/card [cloned chip]" if expect_bad else "/v1/verify/card", "POST", "/v1/verify/card",
                  body, role, lambda status, _ct, content: checks.verdict_failure(status, content, expect))
    return Action("card read (cloned chip)" if expect_bad else "card read", run, requests=2.0)


def card_unknown_challenge(role: str) -> Action:
    """A verify with a challenge the service never issued: CHALLENGE_INVALID."""
    def run(turn: Turn) -> None:
        card = turn.rng.choice(turn.data.cards)
        challenge = turn.rng.randbytes(32)
        body = orjson.dumps({"certificate": card["certificate"], "challenge": base64.b64encode(challenge).decode(),
                             "signature": base64.b64encode(turn.data.chip(card).sign_challenge(challenge)).decode(),
                             "terminal": turn.terminal})
        turn.send("/v1/verify/card [unknown challenge]", "POST", "/v1/verify/card", body, role,
                  lambda status, _ct, content: checks.verdict_failure(status, content, "CHALLENGE_INVALID"))
    return Action("card read (unknown challenge)", run)


def manual_check(role: str, *, wrong_dob: bool = False) -> Action:
    def run(turn: Turn) -> None:
        row = turn.rng.choice(turn.data.manual)
        dob, expect = row["dob"], row["expect"]
        if wrong_dob:  # the same permit number with another date of birth: no match, as if unknown
            dob = (dt.date.fromisoformat(dob) + dt.timedelta(days=1)).isoformat()
            expect = "PERMIT_NOT_FOUND"
        body = orjson.dumps({"pn": row["pn"], "dob": dob, "terminal": turn.terminal})
        turn.send("/v1/verify/manual [wrong dob]" if wrong_dob else "/v1/verify/manual", "POST", "/v1/verify/manual",
                  body, role, lambda status, _ct, content: checks.verdict_failure(status, content, expect))
    return Action("manual check (wrong dob)" if wrong_dob else "manual check", run)


def bulk_lookup(role: str) -> Action:
    def run(turn: Turn) -> None:
        lookup = turn.rng.choice(turn.data.partner)
        body = orjson.dumps({"by": "pn", "ids": lookup["ids"]})
        asked, expect = len(lookup["ids"]), lookup["expect_found"]
        # The partner key bound to the employer whose permits this look-up holds.
        turn.send("/v1/permits/lookup [pn x1000]", "POST", "/v1/permits/lookup", body, role,
                  lambda status, _ct, content: checks.found_failure(status, content, asked, expect),
                  token=turn.data.keys[role][lookup["key_index"]])
    return Action("bulk look-up", run)


# The holder endpoints (issue 12): the e-card platform's key, the holder's token in X-Holder-Token.
HOLDER_ROLE = "essc_platform"


def _holder_session(turn: Turn) -> tuple[str, str, str] | None:
    """Sign a holder in; ``(holder token, pn, platform key)``: a token works only with the
    platform key that made it, so the holder's later calls send that key."""
    row = turn.rng.choice(turn.data.es1)
    key = turn.rng.choice(turn.data.keys[HOLDER_ROLE])
    body = orjson.dumps({"code": turn.data.mint_es1(row["pn"])})

    def check(status: int, _ct: str, content: bytes) -> str | None:
        answer, failure = checks.json_answer(status, content, ok=(200, 201))
        if failure is None and not (isinstance(answer, dict) and answer.get("token") and answer.get("expires_at")):
            failure = "a session without token and expires_at"
        return failure

    answer = turn.send("/v1/holder/session", "POST", "/v1/holder/session", body, HOLDER_ROLE, check, token=key)
    if answer is None:
        return None
    session = (str(orjson.loads(answer)["token"]), row["pn"], key)
    turn.data.holder_tokens.append(session)
    return session


def _a_holder(turn: Turn) -> tuple[str, str, str] | None:
    tokens = turn.data.holder_tokens
    return tokens[turn.rng.randrange(len(tokens))] if tokens else _holder_session(turn)


def holder_sign_in() -> Action:
    def run(turn: Turn) -> None:
        _holder_session(turn)
    return Action("holder sign-in", run)


def holder_permit() -> Action:
    def run(turn: Turn) -> None:
        holder = _a_holder(turn)
        if holder is not None:
            token, pn, key = holder
            turn.send("/v1/holder/permit", "GET", "/v1/holder/permit", None, HOLDER_ROLE,
                      lambda status, _ct, content: checks.permit_failure(status, content, pn),
                      token=key, headers={"X-Holder-Token": token})
    return Action("holder reads own permit", run)


def holder_verifications() -> Action:
    def run(turn: Turn) -> None:
        holder = _a_holder(turn)
        if holder is not None:
            def check(status: int, _ct: str, content: bytes) -> str | None:
                answer, failure = checks.json_answer(status, content)
                if failure is None and not (isinstance(answer, dict) and isinstance(answer.get("items"), list)):
                    failure = "an answer without items"
                return failure

            turn.send("/v1/holder/verifications", "GET", "/v1/holder/verifications", None, HOLDER_ROLE, check,
                      token=holder[2], headers={"X-Holder-Token": holder[0]})
    return Action("holder lists who verified them", run)


def holder_bad_token() -> Action:
    def run(turn: Turn) -> None:
        token = base64.urlsafe_b64encode(turn.rng.randbytes(24)).decode()  # no such session
        turn.send("/v1/holder/permit [bad token]", "GET", "/v1/holder/permit", None, HOLDER_ROLE,
                  checks.problem_failure, headers={"X-Holder-Token": token})
    return Action("holder call with a token that does not exist", run)


def probe() -> Action:
    def run(turn: Turn) -> None:
        turn.send("GET /health/live", "GET", "/health/live", None, "",
                  lambda status, _ct, content: None if status == 200 else f"HTTP {status}")
    return Action("probe", run)


# -- scenarios ---------------------------------------------------------------------------


Weighted = tuple[tuple[Action, float], ...]


def _pick(rng: random.Random, mix: Weighted) -> Action:
    return rng.choices([a for a, _ in mix], weights=[w for _, w in mix])[0]


def _mean_requests(mix: Weighted) -> float:
    total = sum(w for _, w in mix)
    return sum(a.requests * w for a, w in mix) / total if total else 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    roles: tuple[str, ...]
    good: Weighted
    bad: Weighted = ()
    rate_scale: float = 1.0
    """Step rates are ``--start-rps`` (and its steps) times this: a bulk look-up costs 1,000 reads."""
    listed: bool = True
    """In the default list of ``run`` (the probe is not: it needs a sink, not the service)."""
    needs_data: bool = True

    def available(self, keys: dict[str, Any]) -> bool:
        return all(role in keys for role in self.roles)

    def pick(self, rng: random.Random, bad_share: float, at: float) -> Action:
        if self.bad and rng.random() < bad_share:
            return _pick(rng, self.bad)
        return _pick(rng, self.good)

    def requests_per_arrival(self, bad_share: float, at: float) -> float:
        if not self.bad:
            return _mean_requests(self.good)
        return (1 - bad_share) * _mean_requests(self.good) + bad_share * _mean_requests(self.bad)

    def shape(self, at: float) -> float:
        """The arrival rate at ``at`` (0..1 of the step) against the step's rate: flat."""
        return 1.0

    def max_shape(self) -> float:
        return 1.0


EXIT_ENTRY = Scenario(
    "exit_entry", "exit-entry desks scan WP1 notices (a few the same again, most new) and fresh ES1 codes",
    ("exit_entry",),
    good=((wp1_repeat("exit_entry"), 0.45), (wp1_cold("exit_entry"), 0.30), (es1_fresh("exit_entry"), 0.25)),
    bad=((bad_code("exit_entry"), 5.0), (es1_replayed("exit_entry"), 1.0)),
)
SERVICE_HALL = Scenario(
    "service_hall", "service halls read physical cards: challenge, the chip signs, verify",
    ("service_hall",),
    good=((card_read("service_hall"), 1.0),),
    bad=((card_read("service_hall", chip_key="wrong"), 1.0), (card_unknown_challenge("service_hall"), 1.0)),
)
MANUAL = Scenario(
    "manual", "social insurance agents check a permit by its number and the holder's date of birth",
    ("social_insurance",),
    good=((manual_check("social_insurance"), 1.0),),
    bad=((manual_check("social_insurance", wrong_dob=True), 1.0),),
)
PARTNER_BULK = Scenario(
    "partner_bulk", "employers' platforms look up 1,000 permit numbers at a time (their own employees only)",
    ("partner",),
    good=((bulk_lookup("partner"), 1.0),),
    rate_scale=0.05,
)
HOLDER = Scenario(
    "holder", "the e-card platform for its holders: sign-in with a fresh ES1 code, own permit, who verified me",
    (HOLDER_ROLE,),
    good=((holder_sign_in(), 0.3), (holder_permit(), 0.4), (holder_verifications(), 0.3)),
    bad=((holder_bad_token(), 1.0),),
)
PROBE = Scenario("probe", "GET /health/live, for the generator's own ceiling against a sink", (),
                 good=((probe(), 1.0),), listed=False, needs_data=False)

# The day, hour by hour: the arrival rate against the busiest hour, and how the
# arrivals split between the kinds of caller. Border desks peak in the morning,
# service halls and social insurance keep office hours, partners run their bulk
# checks at night, holders open the e-card app at lunch and in the evening.
# (hour: rate, exit_entry, service_hall, manual, partner_bulk, holder)
DAY: tuple[tuple[float, dict[str, float]], ...] = tuple(
    (rate, dict(zip(("exit_entry", "service_hall", "manual", "partner_bulk", "holder"), split)))
    for rate, split in (
        (0.08, (0.3, 0.0, 0.0, 0.5, 0.2)), (0.06, (0.3, 0.0, 0.0, 0.6, 0.1)), (0.06, (0.3, 0.0, 0.0, 0.6, 0.1)),
        (0.06, (0.3, 0.0, 0.0, 0.6, 0.1)), (0.08, (0.4, 0.0, 0.0, 0.5, 0.1)), (0.12, (0.6, 0.0, 0.0, 0.3, 0.1)),
        (0.30, (0.8, 0.0, 0.0, 0.0, 0.2)), (0.70, (0.8, 0.05, 0.05, 0.0, 0.1)), (1.00, (0.6, 0.2, 0.1, 0.0, 0.1)),
        (0.95, (0.45, 0.3, 0.15, 0.0, 0.1)), (0.85, (0.35, 0.35, 0.2, 0.0, 0.1)), (0.75, (0.35, 0.35, 0.2, 0.0, 0.1)),
        (0.50, (0.4, 0.15, 0.1, 0.0, 0.35)), (0.65, (0.35, 0.35, 0.2, 0.0, 0.1)), (0.70, (0.35, 0.35, 0.2, 0.0, 0.1)),
        (0.65, (0.35, 0.35, 0.2, 0.0, 0.1)), (0.60, (0.35, 0.35, 0.2, 0.0, 0.1)), (0.50, (0.45, 0.2, 0.1, 0.0, 0.25)),
        (0.40, (0.5, 0.0, 0.0, 0.0, 0.5)), (0.30, (0.5, 0.0, 0.0, 0.0, 0.5)), (0.25, (0.5, 0.0, 0.0, 0.0, 0.5)),
        (0.20, (0.5, 0.0, 0.0, 0.0, 0.5)), (0.15, (0.6, 0.0, 0.0, 0.1, 0.3)), (0.10, (0.6, 0.0, 0.0, 0.1, 0.3)),
    )
)


def day_peak_factor() -> float:
    """The busiest hour of :data:`DAY` against its average hour."""
    rates = [rate for rate, _ in DAY]
    return max(rates) / (sum(rates) / len(rates))


@dataclass(frozen=True)
class DayMix(Scenario):
    """The other scenarios as the hours of a day, compressed into each step; the step's rate is the peak hour's."""

    parts: tuple[Scenario, ...] = ()
    present: tuple[str, ...] = ()
    """The parts whose roles the run has keys for (set by :meth:`for_keys`); the others' shares are spread."""

    def for_keys(self, keys: dict[str, Any]) -> "DayMix":
        present = tuple(p.name for p in self.parts if p.available(keys))
        return DayMix(self.name, self.summary, self.roles, self.good, self.bad, self.rate_scale, self.listed,
                      self.needs_data, self.parts, present)

    def available(self, keys: dict[str, Any]) -> bool:
        return any(p.available(keys) for p in self.parts)

    def _hour(self, at: float) -> tuple[float, list[tuple[Scenario, float]]]:
        rate, split = DAY[min(23, int(at * 24))]
        present = self.present or tuple(p.name for p in self.parts)
        parts = [(p, split[p.name]) for p in self.parts if p.name in present and split[p.name] > 0]
        return rate, parts or [(self.parts[0], 1.0)]

    def pick(self, rng: random.Random, bad_share: float, at: float) -> Action:
        _rate, parts = self._hour(at)
        part = rng.choices([p for p, _ in parts], weights=[w for _, w in parts])[0]
        return part.pick(rng, bad_share, at)

    def requests_per_arrival(self, bad_share: float, at: float) -> float:
        _rate, parts = self._hour(at)
        total = sum(w for _, w in parts)
        return sum(p.requests_per_arrival(bad_share, at) * w for p, w in parts) / total

    def shape(self, at: float) -> float:
        return self._hour(at)[0]

    def max_shape(self) -> float:
        return max(rate for rate, _ in DAY)


DAY_MIX = DayMix(
    "day_mix", "a day compressed into each step: the callers' mix follows the hour, morning peak at the border; "
    "the step's rate is the peak hour's", ("exit_entry",), good=(), parts=(EXIT_ENTRY, SERVICE_HALL, MANUAL,
                                                                             PARTNER_BULK, HOLDER),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (EXIT_ENTRY, SERVICE_HALL, MANUAL, PARTNER_BULK, HOLDER,
                                                      DAY_MIX, PROBE)}


def scenario(name: str, keys: dict[str, Any]) -> Scenario:
    found = SCENARIOS[name]
    return found.for_keys(keys) if isinstance(found, DayMix) else found


def listed(keys: dict[str, Any]) -> list[str]:
    """The default scenarios of a run: every listed one the keys allow."""
    return [s.name for s in SCENARIOS.values() if s.listed and s.available(keys)]


def terminal_ids(worker: int, rng: random.Random) -> tuple[str, str]:
    """Two desks of this generator process: scans come from the first, replays from the second."""
    tag = f"{worker:02d}{rng.getrandbits(24):06x}{os.getpid() % 1000:03d}"
    return f"lt-desk-{tag}-a", f"lt-desk-{tag}-b"
