"""Fuzz the card read (``verify_card_certificate``, ``check_card_signature``,
``verify_card``) on both twins (atheris / libFuzzer).

Run (from the project root; the compiled twin must be built; fuzz/README.md has the
clang build that instruments the compiled twin too)::

    python3 fuzz/fuzz_card.py -runs=200000
    python3 fuzz/fuzz_card.py -max_total_time=600 fuzz/corpus/card

Each input makes a card read in one of several ways (raw certificate bytes; a
valid certificate with bytes edited; a certificate whose signed payload or
protected header is fuzz data), with a challenge and a card signature that are
right, edited, of the wrong length or of the wrong type. It asserts:

- no exception escapes either twin, and every verdict is well formed;
- both twins give the same verdicts and the same ``check_card_signature`` reason;
- a VALID verdict is re-checked independently (cbor2 + PyNaCl): the certificate
  is validly signed by a trusted, non-revoked key and the card signed
  ``b"SSC-AUTH-1" + challenge`` with the certificate's ``cpk``.
- any verdict keeps WIRE-FORMAT 2's order where cbor2 reads a COSE_Sign1 of the
  right shape (``oracle_structure``): a signature of any length but 64 is
  MALFORMED whatever the header says, an empty protected bstr is UNSUPPORTED
  (no alg), and nothing gets past the header unless the protected bstr held
  exactly one map.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402
import cbor2  # noqa: E402
from nacl.exceptions import BadSignatureError  # noqa: E402
from nacl.signing import VerifyKey  # noqa: E402

import _common as common  # noqa: E402
from _common import C, PY  # noqa: E402

TRUST = common.new_trust()  # certificates are never cached: one list serves both twins
CERTIFICATE = common.sign1(common.ACTIVE, cbor2.dumps(common.claims("CARD")))
CHALLENGE = bytes(range(32))
DOMAIN = b"SSC-AUTH-1"
TIMES = (common.NOW, common.NOW - 10**9, common.NOW + 10**9, 0, 2**63 - 1)


def make_certificate(fdp: atheris.FuzzedDataProvider) -> object:
    mode = fdp.ConsumeIntInRange(0, 5)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    if mode == 1:
        return common.edit(CERTIFICATE, fdp)
    signer = common.SIGNERS[fdp.ConsumeIntInRange(0, len(common.SIGNERS) - 1)]
    protected = cbor2.dumps({1: -8, 4: common.kid_of(signer)})
    if mode == 2:  # the claims
        payload = (fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)) if fdp.ConsumeBool()
                   else common.edit(cbor2.dumps(common.claims("CARD")), fdp))
        return common.sign1(signer, payload, protected, tag=fdp.ConsumeBool())
    if mode == 3:  # the header
        protected = common.edit(protected, fdp)
        return common.sign1(signer, cbor2.dumps(common.claims("CARD")), protected)
    if mode == 4:  # too long, or not bytes
        return (b"\x00" * fdp.ConsumeIntInRange(4090, 4200)) if fdp.ConsumeBool() \
            else bytearray(CERTIFICATE)
    return CERTIFICATE


def make_challenge_and_signature(fdp: atheris.FuzzedDataProvider) -> tuple[object, object]:
    challenge: object = CHALLENGE
    mode = fdp.ConsumeIntInRange(0, 4)
    if mode == 1:
        challenge = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    elif mode == 2:
        challenge = bytearray(CHALLENGE)
    signature: object = common.CARD.sign(DOMAIN + bytes(challenge)).signature
    if mode == 3:
        signature = common.edit(signature, fdp)  # type: ignore[arg-type]
    elif mode == 4:
        signature = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70))
    return challenge, signature


def oracle_card(certificate: bytes, challenge: bytes, signature: bytes) -> None:
    body = common.oracle_cose(certificate, "CARD")
    try:
        VerifyKey(body[-70002]["cpk"]).verify(DOMAIN + challenge, signature)
    except BadSignatureError:
        raise AssertionError("VALID card read on a bad card signature") from None


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    now = TIMES[fdp.ConsumeIntInRange(0, len(TIMES) - 1)]
    certificate = make_certificate(fdp)
    challenge, signature = make_challenge_and_signature(fdp)
    what = repr((certificate, challenge, signature))

    c_certificate = C.verify_card_certificate(certificate, TRUST, now)
    py_certificate = PY.verify_card_certificate(certificate, TRUST, now)
    common.check_verdict(c_certificate)
    common.same(c_certificate, py_certificate, "the certificate " + what)
    if type(certificate) is bytes:
        common.oracle_structure(certificate, c_certificate)

    c_card = C.verify_card(certificate, challenge, signature, TRUST, now)
    py_card = PY.verify_card(certificate, challenge, signature, TRUST, now)
    common.check_verdict(c_card)
    common.same(c_card, py_card, "the card read " + what)

    key = c_certificate.card_public_key if fdp.ConsumeBool() else fdp.ConsumeBytes(32)
    c_reason = C.check_card_signature(key, challenge, signature)
    py_reason = PY.check_card_signature(key, challenge, signature)
    assert c_reason == py_reason, (c_reason, py_reason, what)

    if c_card.ok:
        assert c_certificate.ok
        oracle_card(certificate, challenge, signature)  # type: ignore[arg-type]


if __name__ == "__main__":
    common.fuzz_main(test_one_input)
