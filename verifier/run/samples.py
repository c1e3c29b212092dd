"""Ready-to-paste sample requests for the demo: real codes for real permits of the simulator.

The permits are picked from the simulator's snapshot (an active one with a card and
a social security number, and a cancelled one), their codes minted through the
simulator's issuing endpoints, so each sample's expected result is what the index
says about a permit that exists.
"""

from __future__ import annotations

import datetime as dt
import random
import shlex
from pathlib import Path
from typing import Any

import httpx
import msgspec

from fastpath._verify_py import base45_decode, inflate_bounded
from verifier.index.records import PermitRecord
from verifier.issuing import encode_qr

__all__ = [
    "Sample", "Picked", "pick_permits", "tamper_signature", "build_samples", "card_read_flow", "curl_command",
    "holder_flow",
    "write_qr_images",
]

CST = dt.timezone(dt.timedelta(hours=8))  # WIRE-FORMAT 3: dates are China Standard Time


class Sample(msgspec.Struct):
    """One request a person can paste, and the verdict it must get."""

    method: str
    path: str
    role: str
    """The role of the key it is sent with."""
    body: dict[str, Any] | None
    expect: list[str]
    """Acceptable ``result`` codes (for look-ups: empty, the request must simply succeed)."""
    note: str = ""
    curl: str = ""


class Picked(msgspec.Struct):
    valid: PermitRecord
    """Active, valid for at least another month, with an active card and a social security number."""
    cancelled: PermitRecord


def tamper_signature(qr_text: str) -> str:
    """The same code with one bit of its signature flipped: it decodes, and must not verify."""
    prefix, body = qr_text.split(":", 1)
    cose = bytearray(inflate_bounded(base45_decode(body)))
    cose[-1] ^= 0x01  # WIRE-FORMAT 2: the signature bstr is the last item of the COSE_Sign1 array
    return encode_qr(prefix, bytes(cose))


def _usable(record: PermitRecord, today: str, month_ahead: str) -> bool:
    return (
        record.status == "active"
        and record.vf <= today
        and record.vt >= month_ahead
        and record.cn is not None
        and record.ssn is not None
    )


def pick_permits(upstream_url: str, *, timeout_s: float = 60.0, sample_size: int = 2000) -> Picked:
    """Read the simulator's snapshot (NDJSON) and pick, at random, a usable active permit and a cancelled one.

    At random, not the first ones: the simulator's events are deterministic for a seed,
    so a fixed choice would be hit by the same early event in every demo.
    """
    rng = random.SystemRandom()
    now = dt.datetime.now(CST).date()
    today, month_ahead = now.isoformat(), (now + dt.timedelta(days=31)).isoformat()
    decoder = msgspec.json.Decoder(PermitRecord)
    usable: list[PermitRecord] = []
    cancelled: list[PermitRecord] = []
    with httpx.stream("GET", f"{upstream_url}/snapshot", params={"format": "ndjson"}, timeout=timeout_s) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("["):  # the header and trailer lines are objects
                continue
            record = decoder.decode(line)
            if _usable(record, today, month_ahead):
                usable.append(record)
            elif record.status == "cancelled" and record.vt > today:  # a code of an ended permit is EXPIRED
                cancelled.append(record)
            if len(usable) >= sample_size and cancelled:
                break
    if len(usable) < 2:
        raise LookupError("the simulator holds too few active permits with a card: start it with more permits")
    valid, spare = rng.sample(usable, 2)
    if cancelled:
        picked = Picked(valid=valid, cancelled=rng.choice(cancelled))
    else:
        # No cancelled permit among the seeded ones: cancel one now, through the change feed.
        reply = httpx.post(f"{upstream_url}/admin/events", json={"type": "cancel", "pn": spare.pn}, timeout=10.0)
        reply.raise_for_status()
        picked = Picked(valid=valid, cancelled=msgspec.convert(reply.json()["permit"], PermitRecord))
    # The demo's lifecycle events must not turn the printed samples into other answers
    # (a "valid" sample that a random event cancelled a minute later).
    held = httpx.post(f"{upstream_url}/admin/hold", json={"pns": [picked.valid.pn, picked.cancelled.pn]}, timeout=10.0)
    held.raise_for_status()
    return picked


def _mint(client: httpx.Client, upstream_url: str, kind: str, body: dict[str, Any]) -> str:
    reply = client.post(f"{upstream_url}/issue/{kind}", json=body)
    reply.raise_for_status()
    return str(reply.json()["qr"])


OTHER_TERMINAL = "demo-terminal-2"


def build_samples(upstream_url: str, picked: Picked, terminal: str = "demo-terminal-1") -> dict[str, Sample]:
    with httpx.Client(timeout=10.0) as client:
        valid_qr = _mint(client, upstream_url, "wp1", {"pn": picked.valid.pn})
        cancelled_qr = _mint(client, upstream_url, "wp1", {"pn": picked.cancelled.pn})
        es1_qr = _mint(client, upstream_url, "es1", {"pn": picked.valid.pn, "lifetime": 300})

    def qr(text: str) -> dict[str, Any]:
        return {"qr": text, "terminal": terminal}

    return {
        "valid": Sample("POST", "/v1/verify/qr", "exit_entry", qr(valid_qr), ["VALID"],
                        "a WP1 code of an active permit"),
        "cancelled": Sample("POST", "/v1/verify/qr", "exit_entry", qr(cancelled_qr), ["PERMIT_CANCELLED"],
                            "a WP1 code of a cancelled permit, correctly signed"),
        "tampered": Sample("POST", "/v1/verify/qr", "exit_entry", qr(tamper_signature(valid_qr)),
                           ["BAD_SIGNATURE", "MALFORMED"], "the valid code with one bit of its signature flipped"),
        "es1": Sample("POST", "/v1/verify/qr", "service_hall", qr(es1_qr), ["VALID"],
                      "an ES1 dynamic code, the first time (within its 5 minutes; the same command again within "
                      '10 s is a scanner\'s double read: the same VALID, "repeat": true)'),
        "es1_again": Sample("POST", "/v1/verify/qr", "service_hall", {"qr": es1_qr, "terminal": OTHER_TERMINAL},
                            ["REPLAYED"], "the same ES1 code again, from another terminal: it was used"),
        "manual": Sample("POST", "/v1/verify/manual", "social_insurance",
                         {"pn": picked.valid.pn, "dob": picked.valid.dob, "terminal": terminal}, ["VALID"],
                         "no code to scan: permit number and date of birth"),
        "lookup": Sample("POST", "/v1/permits/lookup", "partner",
                         {"by": "pn", "ids": [picked.valid.pn, picked.cancelled.pn]}, [],
                         "a partner bound to the first permit's employer: the other one is 'missing' to it"),
    }


def curl_command(api_url: str, token: str, sample: Sample) -> str:
    parts = ["curl", "-s", "-X", sample.method, api_url + sample.path, "-H", f"Authorization: Bearer {token}"]
    if sample.body is not None:
        parts += ["-H", "Content-Type: application/json", "-d", msgspec.json.encode(sample.body).decode()]
    return shlex.join(parts)


# The samples worth showing to a camera: static WP1 codes (an ES1 code is single-use and
# lives five minutes; a printed one would be REPLAYED or EXPIRED by the time it is shown).
QR_IMAGE_SAMPLES = ("valid", "cancelled", "tampered")


def write_qr_images(folder: Path, samples: dict[str, Sample], scale: int = 6) -> dict[str, Path]:
    """PNG images of the samples' codes (segno, error correction M, 4-module quiet zone): ``{name: path}``."""
    import segno

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in QR_IMAGE_SAMPLES:
        body = samples[name].body or {}
        path = folder / f"{name}-wp1.png"
        segno.make(str(body["qr"]), error="m", micro=False).save(path, scale=scale, border=4)
        written[name] = path
    return written
def card_read_flow(api_url: str, bridge_url: str, token: str, terminal: str = "demo-terminal-1") -> list[str]:
    """Shell lines to paste into one shell: a card read as the counter page makes it (a challenge
    from the API, the demo's card bridge signs it, the verdict from the API)."""
    key = shlex.quote(f"Authorization: Bearer {token}")
    origin = shlex.quote(f"Origin: {api_url}")  # the bridge answers the counter page's origin only
    json_header = "-H 'Content-Type: application/json'"
    field = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"challenge\"])'"
    body = ("python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({\"certificate\": "
            "r[\"certificate\"], \"challenge\": sys.argv[1], \"signature\": r[\"signature\"], "
            f"\"terminal\": \"{terminal}\"}}))' \"$CHALLENGE\"")
    return [
        f"CHALLENGE=$(curl -s -X POST {api_url}/v1/cards/challenge -H {key} | {field})",
        f"curl -s -X POST {bridge_url}/v1/sign -H {origin} {json_header} -d \"{{\\\"challenge\\\": \\\"$CHALLENGE\\\"}}\""
        f" | {body} | curl -s -w '\\n' -X POST {api_url}/v1/verify/card -H {key} {json_header} -d @-",
    ]


def holder_flow(api_url: str, upstream_url: str, platform_token: str, permit_number: str) -> list[str]:
    """Shell lines to paste into one shell: the e-card platform acting for the holder of
    ``permit_number``. The first asks the simulator (standing in for the e-card app) for a
    fresh ES1 code, so the flow works whenever it is pasted (a code lives 5 minutes, once)."""
    key = shlex.quote(f"Authorization: Bearer {platform_token}")
    holder = '-H "X-Holder-Token: $HOLDER"'
    field = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"{}\"])'"
    issue = shlex.quote(msgspec.json.encode({"pn": permit_number, "lifetime": 300}).decode())
    return [
        f"CODE=$(curl -s -X POST {upstream_url}/issue/es1 -H 'Content-Type: application/json' -d {issue}"
        f" | {field.format('qr')})",
        f"HOLDER=$(curl -s -X POST {api_url}/v1/holder/session -H {key} -H 'Content-Type: application/json'"
        f' -d "{{\\"code\\": \\"$CODE\\"}}" | {field.format("token")})',
        f"curl -s -w '\\n' {api_url}/v1/holder/permit -H {key} {holder}",
        f"curl -s {api_url}/v1/holder/notice -H {key} {holder} -H 'Accept: application/pdf' -o notice.pdf",
        f"curl -s -w '\\n' '{api_url}/v1/holder/verifications?limit=20' -H {key} {holder}",
        f"curl -s -o /dev/null -w '%{{http_code}}\\n' -X DELETE {api_url}/v1/holder/session -H {key} {holder}",
    ]
