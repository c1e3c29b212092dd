"""Fuzz the SM2 paths (WIRE-FORMAT 9) on both twins (atheris / libFuzzer): SM2 tokens,
card certificates and the trust list's SM2 keys.

Run (from the project root; the compiled twin must be built)::

    python3 fuzz/fuzz_sm2.py -runs=20000
    python3 fuzz/fuzz_sm2.py -max_total_time=600 fuzz/corpus/sm2

The compiled twin verifies SM2 through OpenSSL's libcrypto, the Python twin
through gmalg: every input is run through both. Each input is one of:

- a valid SM2-signed WP1/ES1 code or card certificate with bytes edited anywhere;
- a valid SM2 message whose signature is replaced by one edited at the byte level
  or set to an edge value (r or s of 0, 1, n - 1, n, 2**256 - 1, t = 0), whose
  header names another alg (-8, -65537 in other encodings, neighbours) or kid;
- a trust list (JSON of an Ed25519 and SM2 keys) with bytes edited, loaded and,
  when it loads, used to verify an SM2 code.

It asserts:

- nothing but a verdict comes out of either twin, well formed, and both twins give
  the same verdict (cold, and for codes past the signature again through a shared
  verdict cache);
- a VALID verdict on an SM2 key is re-checked with gmssl (the conformance vectors'
  SM2, neither twin's): r and s in [1, n - 1] and gmssl's verify of SM3(Z || M);
- a trust list either loads or raises ``TrustListError`` (nothing else), and every
  SM2 key it loads is re-checked here: coordinates below p, on the curve, the kid
  over 0x04 || x || y.

A failure prints the offending input and exits non-zero (libFuzzer writes it to
``crash-*``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402
import cbor2  # noqa: E402

import _common as common  # noqa: E402
from _common import C, PY  # noqa: E402

import fastpath  # noqa: E402
from tests.data.make_sm2_vectors import A, B, DEFAULT_ID, N, P, Key, i32  # noqa: E402

ALG_SM2 = -65537
ACTIVE = Key("fastpath-fuzz: sm2 active")
DISTID = Key("fastpath-fuzz: sm2 distid", b"fuzz@CN-310000")
REVOKED = Key("fastpath-fuzz: sm2 revoked")
STRANGER = Key("fastpath-fuzz: sm2 stranger")  # not in the trust list
SM2_KEYS = {key.kid: key for key in (ACTIVE, DISTID, REVOKED)}
SIGNERS = (ACTIVE, DISTID, REVOKED, STRANGER)


def _jwk(key: Key, status: str) -> dict[str, Any]:
    return key.jwk(iss=common.ISSUERS, status=status)


TRUST_JSON = json.dumps({"keys": [
    json.loads(common.TRUST_JSON)["keys"][0],  # an Ed25519 key, for the algorithm binding
    _jwk(ACTIVE, "active"), _jwk(DISTID, "active"), _jwk(REVOKED, "revoked"),
]})
TRUST = fastpath.TrustList.from_jwks(TRUST_JSON)
SHARED = fastpath.TrustList.from_jwks(TRUST_JSON)  # one verdict cache written and read by both twins
SHARED.cache_limit = 64


def sign1(key: Key, payload: bytes, protected: bytes | None = None, signature: bytes | None = None) -> bytes:
    protected = cbor2.dumps({1: ALG_SM2, 4: key.kid}) if protected is None else protected
    if signature is None:
        r, s = key.sign_e(key.e(common.sig_structure(protected, payload)), protected.hex() + payload.hex()[:64])
        signature = i32(r) + i32(s)
    return b"\xd2\x84" + cbor2.dumps(protected) + b"\xa0" + cbor2.dumps(payload) + cbor2.dumps(signature)


# Signed once: gmssl is pure Python, and edits of these reach every branch.
PAYLOADS = {profile: cbor2.dumps(common.claims(profile)) for profile in ("WP1", "ES1", "CARD")}
TEMPLATES = {(key.kid, profile): sign1(key, PAYLOADS[profile]) for key in SIGNERS for profile in PAYLOADS}
ALGS = (ALG_SM2, ALG_SM2, -8, -65536, -65538, -7, 65537)
EDGES = (0, 1, N - 1, N, N + 1, 2**256 - 1)
TIMES = (common.NOW, common.NOW - 10**9, common.NOW + 10**9)


def _signature(fdp: atheris.FuzzedDataProvider, good: bytes) -> bytes:
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return common.edit(good, fdp)  # may change its length too
    if mode == 1:
        edge = i32(EDGES[fdp.ConsumeIntInRange(0, len(EDGES) - 1)])
        return edge + good[32:] if fdp.ConsumeBool() else good[:32] + edge
    if mode == 2:  # t = r + s = n
        return good[:32] + i32(N - int.from_bytes(good[:32], "big"))
    return fdp.ConsumeBytes(64).ljust(64, b"\x00")


def make_message(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, str]:
    """(COSE message, profile)."""
    profile = ("WP1", "ES1", "CARD")[fdp.ConsumeIntInRange(0, 2)]
    signer = SIGNERS[fdp.ConsumeIntInRange(0, len(SIGNERS) - 1)]
    template = TEMPLATES[(signer.kid, profile)]
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        return common.edit(template, fdp), profile
    cose = cbor2.loads(template).value
    protected, payload, good = cose[0], cose[2], cose[3]
    if mode == 1:
        return sign1(signer, payload, protected, _signature(fdp, good)), profile
    # mode 2: the header: another alg, another kid, or edited bytes; the signature kept
    kid = (SIGNERS[fdp.ConsumeIntInRange(0, len(SIGNERS) - 1)].kid if fdp.ConsumeBool()
           else common.kid_of(common.ACTIVE))
    alg = ALGS[fdp.ConsumeIntInRange(0, len(ALGS) - 1)]
    header = cbor2.dumps({1: alg, 4: kid}) if fdp.ConsumeBool() else common.edit(protected, fdp)
    return sign1(signer, payload, header, good), profile


def oracle_sm2(message: bytes) -> None:
    """A VALID verdict under an SM2 key, re-checked with gmssl."""
    cose = cbor2.loads(message)
    if isinstance(cose, cbor2.CBORTag):
        cose = cose.value  # tag 18, or untagged (section 2 allows both)
    protected_bytes, unprotected, payload, signature = cose
    protected = cbor2.loads(protected_bytes)
    kid = protected.get(4, unprotected.get(4))
    if protected.get(1) != ALG_SM2:
        assert kid not in SM2_KEYS, "VALID under an SM2 kid with another alg"
        return
    key = SM2_KEYS[kid]
    assert key is not REVOKED
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert len(signature) == 64 and 0 < r < N and 0 < s < N, "VALID with r or s out of range"
    e = key.e(common.sig_structure(protected_bytes, payload))
    assert key.signer.verify("%064x%064x" % (r, s), e), "VALID on a signature gmssl refuses"


def _past_the_signature(verdict: Any) -> bool:
    return verdict.ok or verdict.reasons[0].startswith(("claims.", "permit.", "card.", "status.", "time.",
                                                        "key.issuer"))


def check_message(fdp: atheris.FuzzedDataProvider) -> None:
    message, profile = make_message(fdp)
    now = TIMES[fdp.ConsumeIntInRange(0, len(TIMES) - 1)]
    if profile == "CARD":
        c_verdict = C.verify_card_certificate(message, TRUST, now)
        py_verdict = PY.verify_card_certificate(message, TRUST, now)
    else:
        text = common.qr(message, profile + ":")
        c_verdict = C.verify_qr(text, TRUST, now, cache=False)
        py_verdict = PY.verify_qr(text, TRUST, now, cache=False)
        if _past_the_signature(c_verdict):  # what the verdict cache keeps (the rest would only verify again)
            first, second = (C, PY) if fdp.ConsumeBool() else (PY, C)
            common.same(first.verify_qr(text, SHARED, now), c_verdict, "a cached verify (1st) " + repr(text))
            common.same(second.verify_qr(text, SHARED, now), c_verdict, "a cached verify (2nd) " + repr(text))
    common.check_verdict(c_verdict)
    common.check_verdict(py_verdict)
    common.same(c_verdict, py_verdict, message.hex())
    common.oracle_structure(message, c_verdict)
    if c_verdict.ok:
        oracle_sm2(message)


def _b64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


CODE = common.qr(TEMPLATES[(ACTIVE.kid, "WP1")])


def check_trust_list(fdp: atheris.FuzzedDataProvider) -> None:
    document = common.edit(TRUST_JSON.encode(), fdp)
    try:
        trust = fastpath.TrustList.from_jwks(document)
    except fastpath.TrustListError:
        return
    for key in trust.keys.values():
        if key.alg != ALG_SM2:
            continue
        point = key.public_key
        x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
        assert point[0] == 4 and x < P and y < P and (y * y - x**3 - A * x - B) % P == 0, point.hex()
        jwk = next(j for j in json.loads(document)["keys"] if _b64(j["kid"]) == key.kid)
        assert b"\x04" + _b64(jwk["x"]) + _b64(jwk["y"]) == point
        assert key.user_id == (_b64(jwk["distid"]) if "distid" in jwk else DEFAULT_ID)
    common.same(C.verify_qr(CODE, trust, common.NOW, cache=False), PY.verify_qr(CODE, trust, common.NOW, cache=False),
                "the SM2 code under a fuzzed trust list")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        check_trust_list(fdp)
    else:
        check_message(fdp)


if __name__ == "__main__":
    common.fuzz_main(test_one_input)
