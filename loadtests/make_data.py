"""Make the load tests' data: real signed codes for permits that exist in the index.

    python3 loadtests/make_data.py --info .state/demo-info.json [--out .state/loadtest]

Reads the running demo's info file (``verifier demo --info FILE``: API URL, upstream,
Redis, seed), takes the permits from the upstream simulator's snapshot, mints codes
and card certificates through the simulator's issuing endpoints, and writes, under
``--out`` (inside ``.state/``, which git ignores: the keys file holds secrets):

- ``meta.json``    API URL, upstream URL, seed, when, counts
- ``keys.json``    API keys by role, ``--keys-per-role`` of each (many terminals and
                   agencies share one service; spread over keys, as in real life);
                   partner keys: one per bulk look-up, bound to that look-up's employer
- ``wp1_hot.ndjson``   a few WP1 codes scanned over and over (verdict-cache hits)
- ``wp1_cold.ndjson``  many distinct WP1 codes (each text new to the service)
- ``bad.ndjson``   codes that must not verify, each with the verdict it must get:
                   a flipped signature bit, an expired code, a key the trust list
                   does not hold, a permit the index does not hold, text that is not
                   a code
- ``cards.ndjson`` card certificates with the software card's key (the chip), for
                   challenge + verify
- ``es1.ndjson``   permits whose e-card shows ES1 codes (minted fresh per scan, by
                   the simulator's issuing endpoint or, in the open-model generator,
                   by its twin: see :func:`simulator_twin`)
- ``manual.ndjson`` permit number + date of birth, ssn and cn for look-ups
- ``partner.ndjson`` 1,000-id bulk look-ups, each with the partner key it is for and
                   how many of its ids that key may see

Every line carries ``expect``: the verdict the index gives now. The demo's
lifecycle events change permits over time; run the demo with ``--event-rate 0`` for
exact expectations (see README.md).

WP1 codes are minted here by a twin of the simulator (the same seed, permit count
and day give the same issuer key and permits), at libsodium's speed rather than one
HTTP request each; the twin is checked first: a code it mints must be byte for byte
the one the simulator's issuing endpoint mints. Bad codes get their expected verdict
from the offline verifier (``fastpath``) where it can tell (signature, times), and
are checked to be otherwise sound where only the index can (a permit it lacks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec

from verifier.api.auth.roles import Role
from verifier.index.records import PermitRecord
from verifier.lib.progress import Bar, add_progress_flag, configure_progress, progress_override
from verifier.lib.settings import Settings

CST = dt.timezone(dt.timedelta(hours=8))  # WIRE-FORMAT 3: permit dates are China Standard Time
# Every role the service has (the e-card platform's, ``essc_platform``, once it exists).
ROLES = tuple(role.value for role in Role)
BULK_IDS = 1000


def read_snapshot(upstream: str) -> list[PermitRecord]:
    decoder = msgspec.json.Decoder(PermitRecord)
    records = []
    with httpx.stream("GET", f"{upstream}/snapshot", params={"format": "ndjson"}, timeout=120) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith("["):  # header and trailer lines are objects
                records.append(decoder.decode(line))
    return records


def expected_result(record: PermitRecord, today: str) -> str | None:
    """What a fresh WP1 code of this permit gets now, or None when it is not a clean case."""
    if not record.vf <= today < record.vt:  # ended (its code is EXPIRED), or the last day: a run may cross midnight
        return None
    return "PERMIT_CANCELLED" if record.status == "cancelled" else "VALID"


def mint_many(upstream: str, kind: str, bodies: list[dict[str, Any]], threads: int = 4) -> list[dict[str, Any]]:
    with httpx.Client(base_url=upstream, timeout=30) as client:
        def mint(body: dict[str, Any]) -> dict[str, Any]:
            reply = client.post(f"/issue/{kind}", json=body)
            reply.raise_for_status()
            return reply.json()  # type: ignore[no-any-return]

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(mint, bodies))


def simulator_twin(upstream: str, permits: int, seed: int) -> tuple[Any, str]:
    """A twin of the running simulator (same seed, count and day): its keys and permits, minting locally.

    The simulator draws its population for the day it started (UTC) and its keys from
    its seed, with the algorithm its trust list shows (Ed25519, or SM2 with SM3 for
    ``--alg SM2-SM3``); the twin is tried for today and yesterday (a demo started before
    midnight) and accepted only when its trust list is the simulator's and a WP1 code
    the simulator mints for a permit verifies against that list with exactly the
    twin's record of the permit. (Not byte for byte: SM2 signatures are randomised.)
    Returns the twin and the day it is for.
    """
    import fastpath
    from verifier.issuing.mint import permit_map
    from verifier.upstream.simulator import Upstream

    probe_pn = read_first_pn(upstream)
    served = httpx.get(f"{upstream}/trust-list", timeout=10).json()["keys"]
    active = [key for key in served if key["status"] == "active"]
    alg = "SM2-SM3" if active and active[-1]["kty"] == "EC" else "EdDSA"
    reply = httpx.post(f"{upstream}/issue/wp1", json={"pn": probe_pn, "iat": int(time.time()) - 30}, timeout=10)
    reply.raise_for_status()
    theirs = fastpath.verify_qr(reply.json()["qr"], fastpath.TrustList.from_jwks(json.dumps({"keys": served})),
                                cache=False)
    # its codes' status claim names the lists under this base (WIRE-FORMAT 8)
    status_list_base = httpx.get(f"{upstream}/admin/state", timeout=10).json()["status_list_base"]
    today = dt.datetime.now(dt.timezone.utc).date()
    for as_of in (today, today - dt.timedelta(days=1)):
        twin = Upstream.create(permits=permits, seed=seed, as_of=as_of, issuer_alg=alg,  # type: ignore[arg-type]
                               status_list_base=status_list_base)
        try:
            if (theirs.ok and twin.trust_list()["keys"] == served
                    and theirs.permit == permit_map(twin.permit(probe_pn))):
                return twin, as_of.isoformat()
        except Exception:  # noqa: BLE001 - a twin of another day may not hold that permit at all
            continue
    raise SystemExit("make_data: no twin of the simulator mints its codes (another --seed, "
                     "rotated keys, or events since it started?)")


def read_first_pn(upstream: str) -> str:
    with httpx.stream("GET", f"{upstream}/snapshot", params={"format": "ndjson"}, timeout=60) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith("["):
                return msgspec.json.decode(line, type=PermitRecord).pn
    raise SystemExit("make_data: the simulator holds no permits")


def bad_codes(twin: Any, upstream: str, permits: list[PermitRecord], count: int,
              rng: random.Random) -> list[dict[str, Any]]:
    """Codes that must not verify, ``count`` of each kind, with the verdict each must get."""
    import fastpath
    from verifier.issuing import IssuerKey, mint_wp1
    from verifier.run.samples import tamper_signature

    trust = fastpath.TrustList.from_jwks(httpx.get(f"{upstream}/trust-list", timeout=10).content)
    key = twin.keys.ring.active
    stranger = IssuerKey.from_seed(rng.randbytes(32), key.issuers)  # a key no trust list holds
    now = int(time.time())
    rows: list[dict[str, Any]] = []
    for i in range(count):
        record = rng.choice(permits)
        good = mint_wp1(key, record, iat=now - 60 - i, iss=key.issuers[0])
        # A permit number of the right shape whose serial lies beyond the registry.
        missing = msgspec.structs.replace(record, pn=record.pn[:12] + str(10_000_000 + rng.randrange(10**7)))
        offline = {
            "tampered": tamper_signature(good),
            "expired": mint_wp1(key, record, iat=now - 3 * 86400, exp=now - 2 * 86400, iss=key.issuers[0]),
            "unknown_key": mint_wp1(stranger, record, iat=now - 60, iss=key.issuers[0]),
            "malformed": "WP1:" + "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(40)) + "!",
        }
        for kind, qr in offline.items():
            expect = fastpath.verify_qr(qr, trust, cache=False).result
            if expect == "VALID":
                raise SystemExit(f"make_data: a {kind} code verified offline")
            rows.append({"kind": kind, "qr": qr, "expect": expect})
        not_found = mint_wp1(key, missing, iat=now - 60 - i, iss=key.issuers[0])
        if fastpath.verify_qr(not_found, trust, cache=False).result != "VALID":
            raise SystemExit("make_data: a code for a permit the index lacks did not verify offline")
        rows.append({"kind": "not_found", "qr": not_found, "expect": "PERMIT_NOT_FOUND"})
    return rows


def create_keys(store_url: str, per_role: int, partner_employers: list[list[str]]) -> dict[str, list[str]]:
    from verifier.api.auth.keys import add_api_key
    from verifier.lib.redis_client import async_client

    async def make() -> dict[str, list[str]]:
        redis = async_client(store_url)
        try:
            keys: dict[str, list[str]] = {}
            for role in ROLES:
                count = len(partner_employers) if role == "partner" else per_role
                keys[role] = []
                for i in range(count):
                    employers = partner_employers[i] if role == "partner" else ()
                    keys[role].append((await add_api_key(redis, role, f"loadtest {role} {i}", employers))[1])
            return keys
        finally:
            await redis.aclose()

    return asyncio.run(make())


_BAR: Bar | None = None
"""The run's progress bar (rows written), while :func:`main` runs."""


def write_ndjson(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with open(path, "wb") as out:
        for row in rows:
            out.write(msgspec.json.encode(row) + b"\n")
            count += 1
            if _BAR is not None:
                _BAR.advance()
    return count


def card_keys(seed: int) -> Any:
    """The simulator's software cards: the chip keys it derives from its seed, for ``.card(cn)``."""
    from verifier.upstream.simulator import Upstream

    return Upstream.create(permits=0, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--info", type=Path, required=True, help="the demo's info file (verifier demo --info FILE)")
    parser.add_argument("--out", type=Path, default=Path(".state/loadtest"), help="data folder (default .state/loadtest)")
    parser.add_argument("--hot", type=int, default=50, help="WP1 codes scanned over and over (default 50)")
    parser.add_argument("--cold", type=int, default=10_000, help="distinct WP1 codes for cold scans (default 10000)")
    parser.add_argument("--cards", type=int, default=200, help="card certificates (default 200)")
    parser.add_argument("--partner-lookups", type=int, default=20, help="1,000-id bulk look-ups (default 20)")
    parser.add_argument("--bad", type=int, default=20, help="bad codes of each kind (default 20)")
    parser.add_argument("--keys-per-role", type=int, default=8, help="API keys per role (default 8)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the choices made here (default 7)")
    add_progress_flag(parser)
    args = parser.parse_args(argv)
    settings = Settings.from_env(progress=progress_override(args.progress))
    configure_progress(settings.progress, settings.log_format)
    global _BAR
    _BAR = Bar("load-test data", None, unit="rows")
    try:
        return _make(args)
    finally:
        _BAR.finish()
        _BAR = None


def _make(args: argparse.Namespace) -> int:

    info = json.loads(args.info.read_text())
    # API keys live in the store of record (a demo of before it existed: the one Redis)
    upstream, store_url = info["upstream"], info.get("store") or info["redis"]
    rng = random.Random(args.seed)
    started = time.monotonic()
    today = dt.datetime.now(CST).date().isoformat()

    records = read_snapshot(upstream)
    expect = {r.pn: expected_result(r, today) for r in records}
    valid = [r for r in records if expect[r.pn] == "VALID"]
    cancelled = [r for r in records if expect[r.pn] == "PERMIT_CANCELLED"]
    if len(valid) < 10:
        print("make_data: too few valid permits in the simulator; start the demo with more --permits", file=sys.stderr)
        return 2
    # Scans mix valid and cancelled permits about as the registry does.
    scannable = valid + cancelled

    args.out.mkdir(parents=True, exist_ok=True)
    if _BAR is not None:  # the rows of the files below, roughly (es1 and manual: every permit with a card)
        _BAR.update(0, total=args.hot + args.cold + 5 * args.bad + args.cards + args.partner_lookups
                    + 2 * sum(1 for r in valid if r.cn is not None and r.ssn is not None))
    now = int(time.time())
    twin, as_of = simulator_twin(upstream, int(info.get("permits") or len(records)), info["seed"])
    # The twin mints from the seeded permits: leave out any that an event changed since.
    scannable = [r for r in scannable if twin.permit(r.pn) == r]

    def wp1_rows(permits: list[PermitRecord], count: int, base_iat: int) -> Iterable[dict[str, Any]]:
        for i in range(count):
            record = rng.choice(permits)
            # A distinct iat per code: the same permit minted twice is two different texts.
            yield {"qr": twin.mint_wp1(record.pn, iat=base_iat - i)[0], "pn": record.pn, "expect": expect[record.pn]}

    counts = {
        "wp1_hot": write_ndjson(args.out / "wp1_hot.ndjson", wp1_rows(scannable, args.hot, now - 60)),
        "wp1_cold": write_ndjson(args.out / "wp1_cold.ndjson", wp1_rows(scannable, args.cold, now - 120)),
        "bad": write_ndjson(args.out / "bad.ndjson", bad_codes(twin, upstream, valid, args.bad, rng)),
    }

    with_card = [r for r in valid if r.cn is not None and r.ssn is not None]
    card_permits = rng.sample(with_card, min(args.cards, len(with_card)))
    minted_cards = mint_many(upstream, "card", [{"pn": r.pn} for r in card_permits])
    chips = card_keys(info["seed"])
    counts["cards"] = write_ndjson(args.out / "cards.ndjson", (
        {"cn": m["cn"], "pn": r.pn, "certificate": m["certificate"], "card_seed": chips.card(m["cn"]).seed.hex(),
         "expect": "VALID"}
        for m, r in zip(minted_cards, card_permits)
    ))
    # The chip key derived here must be the one the simulator's certificate names: sign once both ways.
    if card_permits:
        _check_card_key(upstream, args.out / "cards.ndjson")

    # ES1 codes are minted by the twin (the generator's e-card app): only permits it holds as the index does.
    counts["es1"] = write_ndjson(args.out / "es1.ndjson", (
        {"pn": r.pn, "expect": "VALID"} for r in with_card if twin.permit(r.pn) == r))
    counts["manual"] = write_ndjson(args.out / "manual.ndjson", (
        {"pn": r.pn, "dob": r.dob, "ssn": r.ssn, "cn": r.cn, "expect": "VALID"} for r in with_card
    ))

    # Partner look-ups: each partner key bound to one busy employer; 1,000 ids, some its own, most not.
    by_employer: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_employer[record.emp].append(record.pn)
    busiest = sorted(by_employer, key=lambda e: len(by_employer[e]), reverse=True)[: args.partner_lookups]
    partner_employers = [[employer] for employer in busiest]
    all_pns = [r.pn for r in records]
    lookups = []
    for key_index, employer in enumerate(busiest):
        own = by_employer[employer]
        ids = list(dict.fromkeys(own + rng.sample(all_pns, min(len(all_pns), BULK_IDS))))[:BULK_IDS]
        lookups.append({"key_index": key_index, "ids": ids, "expect_found": sum(1 for pn in ids if pn in own)})
    counts["partner"] = write_ndjson(args.out / "partner.ndjson", lookups)

    keys = create_keys(store_url, args.keys_per_role, partner_employers)
    keys_file = args.out / "keys.json"
    keys_file.write_text(json.dumps(keys, indent=1))
    keys_file.chmod(0o600)
    meta = {
        "url": info["url"], "upstream": upstream, "seed": info["seed"], "made_at": now,
        "twin": {"permits": int(info.get("permits") or len(records)), "seed": info["seed"], "as_of": as_of,
                 "status_list_base": twin.desk.status_list_base},
        "counts": counts, "permits": len(records), "valid": len(valid), "cancelled": len(cancelled),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"make_data: {counts} in {time.monotonic() - started:.1f} s -> {args.out}")
    return 0


def _check_card_key(upstream: str, cards_file: Path) -> None:
    from verifier.issuing import SoftwareCard

    first = json.loads(cards_file.read_text().splitlines()[0])
    challenge = bytes(range(32))
    reply = httpx.post(f"{upstream}/cards/{first['cn']}/sign",
                       json={"challenge": base64.b64encode(challenge).decode()}, timeout=10)
    reply.raise_for_status()
    ours = SoftwareCard.from_seed(bytes.fromhex(first["card_seed"])).sign_challenge(challenge)
    if base64.b64decode(reply.json()["signature"]) != ours:
        raise SystemExit("make_data: the card key derived here differs from the simulator's (different --seed?)")


if __name__ == "__main__":
    sys.exit(main())
