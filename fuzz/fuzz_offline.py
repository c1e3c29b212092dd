"""Fuzz ``fastpath.offline``: bundle files and offline verdicts (atheris / libFuzzer).

Run (from the project root)::

    python3 fuzz/fuzz_offline.py -runs=200000
    python3 fuzz/fuzz_offline.py -max_total_time=600 fuzz/corpus/offline

Each input makes a bundle file (raw bytes; a good bundle's JSON with bytes edited; a
good bundle with one list replaced by fuzz bytes or an edited token) and a code (a
good WP1 code pointing at a fuzzed entry, or one with bytes edited), then loads the
bundle and verifies the code offline with both twins. It asserts:

- loading gives an ``OfflineBundle`` or a ``BundleError``, nothing else;
- both twins give the same offline verdict, of a known result, its ``as_dict`` JSON;
- a VALID verdict is re-checked independently: the code verifies on both twins, the
  permits list is a Status List current at that time, and the entry the code's claim
  names, read with the draft's rule from the list's bytes, is 0.
"""

from __future__ import annotations

import base64
import json
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402
import cbor2  # noqa: E402

import _common as common  # noqa: E402

with atheris.instrument_imports(include=["fastpath"]):
    from fastpath import StatusList, codes  # noqa: E402
    from fastpath.offline import BundleError, OfflineBundle, OfflineVerifier  # noqa: E402

NOW = common.NOW
TYP = "application/statuslist+cwt"
URI = "https://pv.example/v1/status-lists/permits"
ENTRIES = bytes([0b00_01_00_00, 0b10_00_00_01])  # entries 0..7: 0 0 1 0 1 0 0 2


def status_list(lst: bytes = zlib.compress(ENTRIES), bits: int = 2, sub: str = URI) -> bytes:
    claims = {2: sub, 6: NOW - 60, 4: NOW + 3600, 65534: 300, 65533: {"bits": bits, "lst": lst}}
    return common.sign1(common.STATUS, cbor2.dumps(claims), cbor2.dumps({1: -8, 4: common.kid_of(common.STATUS),
                                                                           16: TYP}))


GOOD_LIST = status_list()


def bundle_file(permits: bytes = GOOD_LIST) -> bytes:
    return json.dumps({
        "format": "permit-verifier/offline-bundle/1", "source": "https://pv.example", "fetched_at": NOW,
        "trust_list": json.loads(common.TRUST_JSON),
        "status_lists": {"permits": base64.urlsafe_b64encode(permits).rstrip(b"=").decode()},
    }).encode()


GOOD_BUNDLE = bundle_file()


def code(idx: object) -> str:
    claims = common.claims("WP1")
    claims[65535] = {"status_list": {"idx": idx, "uri": URI}}
    return common.qr(common.sign1(common.ACTIVE, cbor2.dumps(claims)))


def make_bundle(fdp: atheris.FuzzedDataProvider) -> bytes:
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    if mode == 1:
        return common.edit(GOOD_BUNDLE, fdp)
    if mode == 2:
        return bundle_file(common.edit(GOOD_LIST, fdp))
    lst = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    return bundle_file(status_list(zlib.compress(lst) if fdp.ConsumeBool() else lst, fdp.ConsumeIntInRange(0, 3)))


def independent_entry(bundle: OfflineBundle, idx: int) -> int:
    held = bundle.lists["permits"]
    assert isinstance(held, StatusList) and held.iat - 60 <= NOW < held.exp, held
    cose = cbor2.loads(bundle.tokens["permits"])
    if isinstance(cose, cbor2.CBORTag):  # tag 18, or untagged (WIRE-FORMAT 2 takes both)
        assert cose.tag == 18, cose.tag
        cose = cose.value
    body = cbor2.loads(cose[2])
    array = zlib.decompress(body[65533]["lst"])
    bits = body[65533]["bits"]
    return (array[idx * bits // 8] >> (idx * bits % 8)) & ((1 << bits) - 1)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    raw = make_bundle(fdp)
    try:
        bundle = OfflineBundle.from_bytes(raw, now=NOW)
    except BundleError:
        return
    assert isinstance(bundle, OfflineBundle)
    idx = fdp.ConsumeIntInRange(-2, 20)
    text = code(idx) if fdp.ConsumeBool() else common.edit(code(idx).encode(), fdp).decode("latin-1")
    verdicts = [OfflineVerifier(bundle, twin=twin).verify_qr(text, NOW, cache=False) for twin in (common.C, common.PY)]
    c_verdict, py_verdict = verdicts
    assert (c_verdict.result, c_verdict.reasons, c_verdict.permit) == (
        py_verdict.result, py_verdict.reasons, py_verdict.permit), (c_verdict, py_verdict)
    assert c_verdict.result in common.KNOWN_RESULTS
    json.dumps(c_verdict.as_dict())
    if c_verdict.result == codes.VALID:
        fast = common.C.verify_qr(text, bundle.trust, NOW, cache=False)
        assert fast.ok and fast.status_ref is not None and fast.status_ref.uri == URI
        assert independent_entry(bundle, fast.status_ref.idx) == 0, (fast.status_ref, c_verdict)


if __name__ == "__main__":
    common.fuzz_main(test_one_input)
