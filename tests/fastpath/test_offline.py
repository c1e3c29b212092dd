"""fastpath.offline: a bundle (trust list + Status Lists) and verdicts with no network
(WIRE-FORMAT 8's offline result rules), on both twins. Tokens and lists are crafted by
tests/fastpath/craft.py (cbor2, zlib, PyNaCl), not by the service's writer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fastpath
from fastpath import codes
from fastpath.offline import (
    BUNDLE_FILE, MAX_BUNDLE_BYTES, PERMIT_FIELDS, BundleError, OfflineBundle, OfflineVerdict, OfflineVerifier,
)

from . import craft
from .craft import (
    ACTIVE, CARDS_LIST_URI, NOW, PERMIT, PERMITS_LIST_URI, STATUS_REVOKED, STRANGER, card_sign,
    claims, pack, qr, sign1, status_claim, status_list_claims, status_list_token,
)

# permits: 0 valid, 1 cancelled, 2 suspended, 3 (no meaning), 4.. valid; cards: 0 valid, 1 not
PERMIT_ENTRIES = [0, 1, 2, 3, 0, 0, 0, 0]
CARD_ENTRIES = [0, 1, 0, 0, 0, 0, 0, 0]


def permits_token(entries: list[int] = PERMIT_ENTRIES, **changes: Any) -> bytes:
    return status_list_token(payload=status_list_claims(bits=2, lst=zlib.compress(pack(entries, 2)), **changes))


def cards_token(entries: list[int] = CARD_ENTRIES, **changes: Any) -> bytes:
    changes.setdefault("sub", CARDS_LIST_URI)
    return status_list_token(payload=status_list_claims(bits=1, lst=zlib.compress(pack(entries, 1)), **changes))


def bundle(**tokens: bytes) -> OfflineBundle:
    tokens = tokens or {"permits": permits_token(), "cards": cards_token()}
    return OfflineBundle.from_parts(craft.trust_list_json(), tokens, now=NOW, source="https://pv.example")


@pytest.fixture
def offline(twin: ModuleType) -> OfflineVerifier:
    return OfflineVerifier(bundle(), twin=twin)


def wp1(idx: int | None, **overrides: Any) -> str:
    if idx is not None:
        overrides.setdefault("status", status_claim(idx))
    return qr(sign1(overrides.pop("signer", ACTIVE), claims("WP1", **overrides)))


def es1(idx: int, cti: bytes = b"cti-offline-0001") -> str:
    return qr(sign1(ACTIVE, claims("ES1", iat=NOW - 10, status=status_claim(idx), cti=cti)), "ES1:")


# --- the result rules ------------------------------------------------------------------
@pytest.mark.parametrize(("idx", "result", "reasons"), [
    (0, codes.VALID, ()),
    (1, codes.PERMIT_CANCELLED, ("status.cancelled",)),
    (2, codes.PERMIT_CANCELLED, ("status.suspended",)),
    (3, codes.STATUS_UNAVAILABLE, ("status_list.value",)),   # 3 means nothing: never VALID
    (8, codes.STATUS_UNAVAILABLE, ("status_list.index",)),   # past the list's end
])
def test_a_wp1_code_and_its_entry(offline: OfflineVerifier, idx: int, result: str, reasons: tuple[str, ...]) -> None:
    verdict = offline.verify_qr(wp1(idx), NOW)
    assert (verdict.result, verdict.reasons) == (result, reasons)
    assert verdict.status_list == "permits" and verdict.status_time == NOW - 60 and verdict.age_s == 60
    assert verdict.ok is (result == codes.VALID)
    assert verdict.permit is not None and verdict.permit["pn"] == PERMIT["pn"]


def test_a_valid_verdict_in_the_apis_shape(offline: OfflineVerifier) -> None:
    shown = offline.verify_qr(wp1(0), NOW).as_dict()
    assert set(shown) == {"result", "reasons", "profile", "permit", "checked_at", "index_as_of", "lag_s"}
    assert shown["checked_at"] == "2026-01-01T00:00:00.000Z"
    assert shown["index_as_of"] == {"seq": None, "time": "2025-12-31T23:59:00.000Z"} and shown["lag_s"] == 60
    assert list(shown["permit"]) == [f for f in PERMIT_FIELDS if f in shown["permit"]]
    assert shown["permit"]["status"] == "active" and shown["permit"]["n"] == PERMIT["n"]
    json.dumps(shown)  # plain JSON


def test_the_field_order_is_the_apis() -> None:
    from verifier.api.verdicts.schemas import PermitView

    assert PERMIT_FIELDS == PermitView.__struct_fields__


def test_a_token_without_the_status_claim(offline: OfflineVerifier) -> None:
    # minted before status lists: its signature holds, its status is unknown offline
    verdict = offline.verify_qr(wp1(None), NOW)
    assert (verdict.result, verdict.reasons) == (codes.STATUS_UNAVAILABLE, ("status.no_claim",))
    assert verdict.permit is not None and "status" not in verdict.permit


@pytest.mark.parametrize(("text", "result"), [
    ("WP1:not base45!", codes.MALFORMED),
    ("XX1:ABC", codes.UNSUPPORTED),
    ("", codes.UNSUPPORTED),
])
def test_what_fastpath_refuses_is_its_verdict(offline: OfflineVerifier, text: str, result: str) -> None:
    verdict = offline.verify_qr(text, NOW)
    assert verdict.result == result and verdict.permit is None and verdict.status_list is None


def test_signature_failures_come_first(offline: OfflineVerifier) -> None:
    assert offline.verify_qr(wp1(0, signer=STRANGER), NOW).result == codes.UNKNOWN_KEY
    tampered = qr(sign1(ACTIVE, claims("WP1", status=status_claim(0)), signature=bytes(64)))
    assert offline.verify_qr(tampered, NOW).result == codes.BAD_SIGNATURE
    expired = wp1(0, iat=NOW - 7200, exp=NOW - 3600)
    assert offline.verify_qr(expired, NOW).result == codes.EXPIRED


def test_a_token_pointing_at_another_list(offline: OfflineVerifier) -> None:
    verdict = offline.verify_qr(wp1(0, status=status_claim(0, "https://elsewhere.example/permits")), NOW)
    assert (verdict.result, verdict.reasons) == (codes.STATUS_UNAVAILABLE, ("status_list.uri",))


def test_an_expired_list_is_status_unavailable(twin: ModuleType) -> None:
    verifier = OfflineVerifier(bundle(permits=permits_token(iat=NOW - 7200, exp=NOW - 3600)), twin=twin)
    verdict = verifier.verify_qr(wp1(0), NOW)
    assert (verdict.result, verdict.reasons) == (codes.STATUS_UNAVAILABLE, ("time.expired",))
    assert verdict.age_s == 7200  # the list is still read: how old it is can be said
    # a list current when loaded runs out later
    fresh = OfflineVerifier(bundle(), twin=twin)
    assert fresh.verify_qr(wp1(0), NOW).ok
    assert fresh.verify_qr(wp1(0), NOW + 3540).reasons == ("time.expired",)


@pytest.mark.parametrize(("token", "reason"), [
    (permits_token(sub=PERMITS_LIST_URI) [:-5], "cbor.truncated"),                    # truncated
    (status_list_token(ACTIVE), codes.R_KEY_USE),                                      # an issuer's key
    (status_list_token(STRANGER), codes.R_KEY_UNKNOWN),                                # a key not trusted
    (status_list_token(STATUS_REVOKED), codes.R_KEY_REVOKED),                          # a revoked signer
    (status_list_token(typ="application/cwt"), codes.R_HEADER_TYP),                    # wrong typ
    (status_list_token(payload=status_list_claims(bits=1)), "status_list.type.bits"),  # a 1-bit permits list
    (status_list_token(payload=status_list_claims(lst=zlib.compress(bytes(1 << 25)))), codes.R_ZLIB_TOO_LARGE),
])
def test_a_list_that_fails_its_checks(twin: ModuleType, token: bytes, reason: str) -> None:
    verifier = OfflineVerifier(bundle(permits=token), twin=twin)
    verdict = verifier.verify_qr(wp1(0), NOW)
    assert (verdict.result, verdict.reasons) == (codes.STATUS_UNAVAILABLE, (reason,))


def test_a_bundle_without_the_list(twin: ModuleType) -> None:
    verifier = OfflineVerifier(bundle(cards=cards_token()), twin=twin)
    assert verifier.verify_qr(wp1(0), NOW).reasons == ("status_list.missing",)


def test_an_es1_code_once_then_replayed(offline: OfflineVerifier) -> None:
    code = es1(0)
    assert offline.verify_qr(code, NOW).ok
    double = offline.verify_qr(code, NOW + 5)  # a scanner's double read
    assert double.ok and double.repeat and double.as_dict()["repeat"] is True
    again = offline.verify_qr(code, NOW + 20)
    assert (again.result, again.reasons) == (codes.REPLAYED, ("status.replayed",))
    cancelled = es1(1, cti=b"cti-offline-0002")
    assert offline.verify_qr(cancelled, NOW).result == codes.PERMIT_CANCELLED
    assert offline.verify_qr(cancelled, NOW + 30).result == codes.PERMIT_CANCELLED  # not counted as seen


# --- card reads ------------------------------------------------------------------------
def certificate(idx: int | None) -> bytes:
    extra = {"status": status_claim(idx, CARDS_LIST_URI)} if idx is not None else {}
    return sign1(ACTIVE, claims("CARD", **extra))


def test_a_card_read_with_a_challenge_of_its_own(offline: OfflineVerifier) -> None:
    challenge = offline.new_challenge(NOW)
    verdict = offline.verify_card(certificate(0), challenge, card_sign(challenge), NOW)
    assert verdict.ok and verdict.status_list == "cards" and verdict.permit["card_status"] == "active"
    # used up
    again = offline.verify_card(certificate(0), challenge, card_sign(challenge), NOW)
    assert (again.result, again.reasons) == (codes.CHALLENGE_INVALID, ("challenge.unknown",))


def test_card_reads_that_fail(offline: OfflineVerifier) -> None:
    stranger_challenge = bytes(range(32))
    assert offline.verify_card(certificate(0), stranger_challenge, card_sign(stranger_challenge), NOW).result \
        == codes.CHALLENGE_INVALID
    late = offline.new_challenge(NOW)
    assert offline.verify_card(certificate(0), late, card_sign(late), NOW + 61).result == codes.CHALLENGE_INVALID
    challenge = offline.new_challenge(NOW)
    assert offline.verify_card(certificate(0), challenge, bytes(64), NOW).result == codes.BAD_SIGNATURE
    lost = offline.new_challenge(NOW)
    verdict = offline.verify_card(certificate(1), lost, card_sign(lost), NOW)
    assert (verdict.result, verdict.reasons) == (codes.CARD_INVALID, ("status.card_invalid",))
    assert "card_status" not in verdict.permit  # lost, replaced or its permit cancelled: not said
    trusted = offline.verify_card(certificate(None), stranger_challenge, card_sign(stranger_challenge), NOW,
                                  trusted_challenge=True)
    assert trusted.reasons == ("status.no_claim",)
    assert offline.verify_card(b"\x00", stranger_challenge, bytes(64), NOW).result == codes.MALFORMED


def test_a_wp1_status_claim_is_never_read_in_cards(offline: OfflineVerifier) -> None:
    # a card certificate whose claim names the permits list: the uri check refuses it
    challenge = offline.new_challenge(NOW)
    cert = sign1(ACTIVE, claims("CARD", status=status_claim(0, PERMITS_LIST_URI)))
    assert offline.verify_card(cert, challenge, card_sign(challenge), NOW).reasons == ("status_list.uri",)


# --- the bundle file ---------------------------------------------------------------------
def test_a_bundle_saved_and_loaded(tmp_path: Path, twin: ModuleType) -> None:
    saved = bundle()
    path = saved.save(tmp_path)
    assert path == tmp_path / BUNDLE_FILE and not list(tmp_path.glob(".*.tmp"))
    loaded = OfflineBundle.load(tmp_path, now=NOW)
    assert loaded.tokens == saved.tokens and loaded.source == "https://pv.example"
    assert OfflineVerifier(loaded, twin=twin).verify_qr(wp1(1), NOW).result == codes.PERMIT_CANCELLED
    assert OfflineBundle.load(path, now=NOW).fetched_at == NOW


def test_a_save_that_fails_leaves_the_good_bundle(tmp_path: Path) -> None:
    # a process that may write no file past 1 KB (RLIMIT_FSIZE: the write fails, as on a full
    # disk) saves a new bundle over a good one: the good one stays, no temporary file is left
    good = bundle().save(tmp_path)
    before = good.read_bytes()
    newer = tmp_path / "newer.json"
    newer.write_bytes(bundle(permits=permits_token([1] * 8)).to_bytes())
    script = (
        "import resource, signal, sys\n"
        "from fastpath.offline import OfflineBundle\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "new = OfflineBundle.from_bytes(open(sys.argv[1], 'rb').read(), now=%d)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "try:\n"
        "    new.save(sys.argv[2])\n"
        "except OSError as exc:\n"
        "    print('failed', exc.errno)\n" % NOW)
    done = subprocess.run([sys.executable, "-c", script, str(newer), str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.startswith("failed"), (done.stdout, done.stderr)
    assert good.read_bytes() == before
    assert not list(tmp_path.glob(f".{BUNDLE_FILE}.*"))


def _bundle_file(**changes: Any) -> bytes:
    document = json.loads(bundle().to_bytes())
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize("data", [
    b"",                                                        # empty
    b"{",                                                       # truncated JSON
    b"[]",                                                      # not an object
    b'{"format": "something/else"}',                            # another format
    _bundle_file(trust_list={"keys": []}),                      # an empty trust list
    _bundle_file(trust_list={"keys": [{"kty": "RSA"}]}),         # a bad key
    _bundle_file(status_lists={"permits": "not base64!"}),       # a list not in base64url
    _bundle_file(status_lists={"permits": "AAAA="}),             # padded: not as the bundle writes it
    _bundle_file(status_lists={"permits": "AB"}),                # non-canonical trailing bits
    _bundle_file(status_lists={"holders": ""}),                 # a list of another name
    _bundle_file(fetched_at="yesterday"),                       # wrong type
    _bundle_file(trust_list=None),                              # missing trust list
    b"\xff\xfe",                                                # not UTF-8
    b"[" * 100_000,                                             # nested too deeply
    b" " * (MAX_BUNDLE_BYTES + 1),                              # oversized
], ids=lambda d: repr(d[:30]))
def test_a_file_that_is_no_bundle(data: bytes) -> None:
    with pytest.raises(BundleError):
        OfflineBundle.from_bytes(data, now=NOW)


def test_a_bundle_missing_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        OfflineBundle.load(tmp_path / "nowhere")


def test_reprs_hold_no_permit_data(offline: OfflineVerifier) -> None:
    text = repr(offline.verify_qr(wp1(0), NOW)) + repr(offline.bundle)
    assert PERMIT["pn"] not in text and PERMIT["n"] not in text
    assert isinstance(offline.verify_qr(wp1(0), NOW), OfflineVerdict)
    assert fastpath.IMPLEMENTATION in ("c", "py")


def test_the_readmes_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the library example of README "Offline verification", as printed there
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python\nfrom fastpath.offline import")
    example = readme[start + len("```python\n"):readme.index("```", start + 10)]
    assert len(example.strip().splitlines()) <= 10
    clock = int(time.time())  # the example reads the clock: lists current now
    OfflineBundle.from_parts(craft.trust_list_json(), {"permits": permits_token(iat=clock - 60, exp=clock + 3600),
                             "cards": cards_token(iat=clock - 60, exp=clock + 3600)}).save(tmp_path)

    class Chip:  # the card reader: a software card with the test card key
        def read(self, challenge: bytes) -> tuple[bytes, bytes]:
            return certificate(0), card_sign(challenge)

    exec(example.replace("/var/lib/scanner", str(tmp_path)),  # noqa: S102 - the README's own code
         {"qr_text": wp1(0, iat=clock - 60), "chip": Chip()})
    printed = capsys.readouterr().out
    assert printed.startswith("VALID () status") and "'result': 'VALID'" in printed
