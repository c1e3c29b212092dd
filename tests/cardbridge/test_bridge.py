"""The card-reader bridge over real HTTP: who it answers, what it refuses, the chip commands, the simulator's cards."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fastpath
import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.cardbridge.applet import AID, CardError, SoftwareApplet, read_card
from verifier.cardbridge.cards import CARD_CERTIFICATE_FILE, CARD_KEY_FILE, AppletCardSource, choose_source
from verifier.cardbridge.server import PROTOCOL, BridgeServer
from verifier.issuing import IssuerKey, SoftwareCard, mint_card_certificate
from verifier.issuing.keys import trust_list

from tests.upstream.support import simulator

COUNTER = "http://127.0.0.1:8000"
HOLDER = {"cn": "S31000012345678", "ssn": "310000198504120011", "pn": "WP3100002020000001"}


def make_card(issuer: IssuerKey) -> SoftwareCard:
    card = SoftwareCard.generate()
    now = int(time.time())
    card.certificate = mint_card_certificate(issuer, HOLDER, card.public_key, iat=now - 60, exp=now + 86400)
    return card


@pytest.fixture
def issuer() -> IssuerKey:
    return IssuerKey.generate(["CN-310000"])


@pytest.fixture
def card(issuer: IssuerKey) -> SoftwareCard:
    return make_card(issuer)


@pytest.fixture
def bridge(card: SoftwareCard) -> Iterator[BridgeServer]:
    source = AppletCardSource("software", "test card", SoftwareApplet(card).transmit)
    server = BridgeServer(source, (COUNTER,), port=0).start()
    yield server
    server.stop()


def challenge_b64() -> tuple[bytes, str]:
    challenge = os.urandom(32)
    return challenge, base64.b64encode(challenge).decode()


def test_the_counter_origin_gets_a_signed_challenge(bridge: BridgeServer, card: SoftwareCard, issuer: IssuerKey) -> None:
    challenge, encoded = challenge_b64()
    reply = httpx.post(bridge.url + "/v1/sign", json={"challenge": encoded}, headers={"Origin": COUNTER})
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == COUNTER
    body = reply.json()
    certificate, signature = base64.b64decode(body["certificate"]), base64.b64decode(body["signature"])
    assert certificate == card.certificate
    assert fastpath.check_card_signature(card.public_key, challenge, signature) is None
    trust = fastpath.TrustList.from_jwks(orjson.dumps(trust_list([issuer])))
    assert fastpath.verify_card_certificate(certificate, trust, int(time.time())).result == fastpath.codes.VALID


def test_status_names_the_protocol_and_the_card(bridge: BridgeServer) -> None:
    reply = httpx.get(bridge.url + "/v1/status", headers={"Origin": COUNTER})
    assert reply.json() == {"protocol": PROTOCOL, "source": "software", "reader": "test card", "card_present": True}


def test_another_origin_is_refused_before_the_card_is_touched(card: SoftwareCard) -> None:
    applet = SoftwareApplet(card)
    commands: list[bytes] = []

    def transmit(apdu: bytes) -> tuple[bytes, int, int]:
        commands.append(apdu)
        return applet.transmit(apdu)

    server = BridgeServer(AppletCardSource("software", "test card", transmit), (COUNTER,), port=0).start()
    try:
        _, encoded = challenge_b64()
        reply = httpx.post(server.url + "/v1/sign", json={"challenge": encoded}, headers={"Origin": "https://evil.example"})
        assert reply.status_code == 403
        assert reply.headers["content-type"] == "application/problem+json"
        assert "access-control-allow-origin" not in reply.headers
        assert commands == []
        assert httpx.post(server.url + "/v1/sign", json={"challenge": encoded}, headers={"Origin": COUNTER}).status_code == 200
        assert len(commands) >= 3  # select, read, authenticate: the same request from the counter reached the card
    finally:
        server.stop()


def test_a_preflight_of_the_counter_is_answered_with_private_network_access(bridge: BridgeServer) -> None:
    reply = httpx.options(bridge.url + "/v1/sign", headers={
        "Origin": COUNTER, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
        "Access-Control-Request-Private-Network": "true",
    })
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == COUNTER
    assert reply.headers["access-control-allow-private-network"] == "true"
    assert "POST" in reply.headers["access-control-allow-methods"]
    refused = httpx.options(bridge.url + "/v1/sign", headers={"Origin": "http://127.0.0.1:9999",
                                                              "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_a_host_that_is_not_the_loopback_is_refused(bridge: BridgeServer) -> None:
    # DNS rebinding: a name of the attacker's that resolves to 127.0.0.1
    reply = httpx.get(bridge.url + "/v1/status", headers={"Host": f"rebind.example:{bridge.port}"})
    assert reply.status_code == 403
    assert "loopback" in reply.json()["detail"]


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"challenge": "AAAA"}', "application/json", 400),        # 3 bytes, not 32
    (b'{"challenge": "not base64!"}', "application/json", 400),
    (b'{"nonce": "x"}', "application/json", 400),
    (b"not json", "application/json", 400),
    (b'{"challenge": "x"}', "text/plain", 415),                   # a "simple" request: no preflight would be sent
    (b"x" * 5000, "application/json", 413),
])
def test_bad_requests_get_problem_documents(bridge: BridgeServer, body: bytes, content_type: str, status: int) -> None:
    reply = httpx.post(bridge.url + "/v1/sign", content=body, headers={"Content-Type": content_type, "Origin": COUNTER})
    assert reply.status_code == status
    problem = reply.json()
    assert (problem["status"], reply.headers["content-type"]) == (status, "application/problem+json")


def test_unknown_paths_and_methods(bridge: BridgeServer) -> None:
    assert httpx.get(bridge.url + "/v1/cards").status_code == 404
    assert httpx.get(bridge.url + "/v1/sign").status_code == 405
    assert httpx.delete(bridge.url + "/v1/status").status_code == 405


def test_the_chip_commands_against_the_software_applet(card: SoftwareCard) -> None:
    applet = SoftwareApplet(card)
    challenge = os.urandom(32)
    certificate, signature = read_card(applet.transmit, challenge)
    assert certificate == card.certificate
    assert fastpath.check_card_signature(card.public_key, challenge, signature) is None
    # an applet that is not ours: SELECT fails, nothing is read
    other = SoftwareApplet(card)
    wrong_select = bytes([0x00, 0xA4, 0x04, 0x00, 3]) + b"ABC" + b"\x00"
    assert other.transmit(wrong_select)[1:] == (0x6A, 0x82)
    assert other.transmit(bytes([0x00, 0x88, 0x00, 0x00, 32]) + challenge + b"\x40")[1:] == (0x69, 0x85)
    assert AID.hex().upper() == "F0505653534301"


def test_a_card_that_answers_wrongly_is_a_card_error(card: SoftwareCard) -> None:
    applet = SoftwareApplet(card)

    def short_signature(apdu: bytes) -> tuple[bytes, int, int]:
        data, sw1, sw2 = applet.transmit(apdu)
        return (data[:10], sw1, sw2) if apdu[1] == 0x88 else (data, sw1, sw2)

    with pytest.raises(CardError, match="10 bytes"):
        read_card(short_signature, os.urandom(32))
    with pytest.raises(CardError, match="6D 00"):
        read_card(lambda apdu: (b"", 0x6D, 0x00), os.urandom(32))


def test_a_card_folder_of_verifier_mint_card(tmp_path: Path, card: SoftwareCard) -> None:
    card.save(tmp_path / CARD_KEY_FILE)
    (tmp_path / CARD_CERTIFICATE_FILE).write_bytes(card.certificate or b"")
    source = choose_source(card_folder=tmp_path, use_reader=False)
    challenge = os.urandom(32)
    certificate, signature = source.read(challenge)
    assert certificate == card.certificate
    assert fastpath.check_card_signature(card.public_key, challenge, signature) is None


def test_a_card_of_the_upstream_simulator() -> None:
    with simulator() as (upstream, server, _client):
        record = next(r for r in upstream.records() if r.status == "active" and r.cn and r.ssn)
        source = choose_source(simulator=server.url, pn=record.pn, use_reader=False)
        assert source.kind == "simulator"
        challenge = os.urandom(32)
        try:
            certificate, signature = source.read(challenge)
        finally:
            source.close()
        trust = fastpath.TrustList.from_jwks(orjson.dumps(upstream.trust_list()))
        verdict = fastpath.verify_card_certificate(certificate, trust, int(time.time()))
        assert verdict.result == fastpath.codes.VALID and verdict.permit["pn"] == record.pn
        key = upstream.card(record.cn).public_key
        assert verdict.card_public_key == key
        assert fastpath.check_card_signature(key, challenge, signature) is None


def test_no_reader_and_no_software_card_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "verifier", "card-bridge", "--allow-origin", COUNTER, "--port", "0"],
                            capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"--card DIR" in result.stderr





_CHALLENGES = st.one_of(st.text(max_size=60), st.integers(), st.none(),
                        st.binary(min_size=30, max_size=34).map(lambda b: base64.b64encode(b).decode()))


@given(body=st.one_of(st.binary(max_size=300), st.builds(lambda v: json.dumps({"challenge": v}).encode(), _CHALLENGES)))
@settings(max_examples=300, deadline=None)
def test_any_body_is_answered_or_refused_never_a_crash(body: bytes) -> None:
    # WIRE-FORMAT 6: only a 32-byte challenge reaches the card; everything else is a 400
    card = make_card(IssuerKey.generate(["CN-310000"]))
    bridge = BridgeServer.__new__(BridgeServer)
    bridge.source = AppletCardSource("software", "test card", SoftwareApplet(card).transmit)
    try:
        answer = bridge.sign(body)
    except Exception as exc:  # noqa: BLE001 - the one allowed refusal is checked below
        assert type(exc).__name__ == "_Refused" and exc.status == 400  # type: ignore[attr-defined]
    else:
        assert len(base64.b64decode(answer["signature"])) == 64
