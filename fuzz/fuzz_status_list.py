"""Fuzz ``fastpath.verify_status_list`` and ``StatusList.get`` (atheris / libFuzzer).

Run (from the project root)::

    python3 fuzz/fuzz_status_list.py -runs=200000
    python3 fuzz/fuzz_status_list.py -max_total_time=600 fuzz/corpus/status_list

Each input makes a Status List Token in one of several ways (raw bytes; a valid
token with bytes edited; a token signed for real whose claims, ``status_list``
map, ``lst`` bytes or protected header are fuzz data or edited; a ``lst`` that
inflates near or past a small bound), then verifies it at one of a few times. It
asserts:

- nothing but a ``StatusList`` or a ``StatusListError`` (with a reason) comes out;
- a list that verified is re-checked independently (cbor2, zlib, PyNaCl): a
  COSE_Sign1 with alg EdDSA and typ ``application/statuslist+cwt`` in its
  protected header, signed by the trust list's Status List key, current at that
  time, with ``bits`` 1 or 2 and ``lst`` the zlib stream of ``list.lst``; and
  every entry ``get`` reads equals the bits read here from the draft's rule.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402
import cbor2  # noqa: E402
from nacl.exceptions import BadSignatureError  # noqa: E402
from nacl.signing import VerifyKey  # noqa: E402

import _common as common  # noqa: E402

with atheris.instrument_imports(include=["fastpath"]):
    from fastpath import StatusList, StatusListError, status_list  # noqa: E402

TRUST = common.new_trust()
TYP = "application/statuslist+cwt"
NOW = common.NOW
TIMES = (NOW, NOW - 10**6, NOW + 10**6, 0, 2**63 - 1)
STATUS_KID = common.kid_of(common.STATUS)


def claims(lst: bytes = zlib.compress(b"\x1b\x00\xe4"), bits: object = 2) -> dict[object, object]:
    return {2: "https://pv.example/v1/status-lists/permits", 6: NOW - 60, 4: NOW + 3600, 65534: 300,
            65533: {"bits": bits, "lst": lst}}


def protected(kid: bytes = STATUS_KID, typ: object = TYP) -> bytes:
    return cbor2.dumps({1: -8, 4: kid, 16: typ})


TEMPLATE = common.sign1(common.STATUS, cbor2.dumps(claims()), protected())


def make_token(fdp: atheris.FuzzedDataProvider) -> object:
    mode = fdp.ConsumeIntInRange(0, 6)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
    if mode == 1:
        return common.edit(TEMPLATE, fdp)
    signer = common.SIGNERS[fdp.ConsumeIntInRange(0, len(common.SIGNERS) - 1)]
    header = protected(common.kid_of(signer))
    if mode == 2:  # the claims: fuzz bytes, or the template's edited
        payload = (fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)) if fdp.ConsumeBool()
                   else common.edit(cbor2.dumps(claims()), fdp))
    elif mode == 3:  # the lst: fuzz bytes, an edited stream, or a stream of fuzz bytes
        raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
        lst = (raw if fdp.ConsumeBool() else
               common.edit(zlib.compress(raw), fdp) if fdp.ConsumeBool() else zlib.compress(raw))
        payload = cbor2.dumps(claims(lst, fdp.ConsumeIntInRange(-1, 9)))
    elif mode == 4:  # near the inflate bound (made small for this run, see below)
        size = fdp.ConsumeIntInRange(BOUND - 3, BOUND + 3)
        payload = cbor2.dumps(claims(zlib.compress(bytes([fdp.ConsumeInt(1) & 0xFF]) * size)))
    elif mode == 5:  # the header: fuzz bytes or an edited one
        header = (fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)) if fdp.ConsumeBool()
                  else common.edit(header, fdp))
        payload = cbor2.dumps(claims())
    else:  # a permit token's header (no typ) or a wrong typ
        header = cbor2.dumps({1: -8, 4: common.kid_of(signer)}) if fdp.ConsumeBool() \
            else protected(common.kid_of(signer), fdp.ConsumeUnicodeNoSurrogates(30))
        payload = cbor2.dumps(claims())
    return common.sign1(signer, payload, header, tag=fdp.ConsumeBool())


def oracle(token: bytes, verified: StatusList, now: int) -> None:
    cose = cbor2.loads(token)
    if isinstance(cose, cbor2.CBORTag):
        assert cose.tag == 18, cose.tag
        cose = cose.value
    protected_bytes, _unprotected, payload, signature = cose
    header = cbor2.loads(protected_bytes)
    assert header.get(1) == -8 and header.get(16) == TYP and header.get(4) == STATUS_KID, header
    try:
        VerifyKey(bytes(common.STATUS.verify_key)).verify(common.sig_structure(protected_bytes, payload), signature)
    except BadSignatureError:
        raise AssertionError("a Status List verified on a bad signature") from None
    body = cbor2.loads(payload)
    assert isinstance(body, Mapping) and body[6] - 60 <= now < body[4], body
    entry = body[65533]
    assert entry["bits"] in (1, 2) and zlib.decompress(entry["lst"]) == verified.lst
    bits = verified.bits
    for i in range(min(len(verified), 64)):
        expected = (verified.lst[i * bits // 8] >> (i * bits % 8)) & ((1 << bits) - 1)
        assert verified.get(i) == expected, (i, verified.get(i), expected)


BOUND = 64  # the inflate bound of this run: small, so that the fuzzer meets it


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    now = TIMES[fdp.ConsumeIntInRange(0, len(TIMES) - 1)]
    token = make_token(fdp)
    try:
        verified = status_list.verify_status_list(token, TRUST, now)  # type: ignore[arg-type]
    except StatusListError as error:
        assert isinstance(error.reason, str) and error.reason, error
        return
    assert isinstance(verified, StatusList) and len(verified.lst) <= BOUND
    oracle(token, verified, now)  # type: ignore[arg-type]


if __name__ == "__main__":
    status_list.MAX_LIST_BYTES = BOUND  # the module reads it at each call
    common.fuzz_main(test_one_input)
