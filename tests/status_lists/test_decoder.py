"""The independent reader (decoder.py) on the draft's own published examples.

The test vectors of draft-ietf-oauth-status-list (its "Status List" figures and its
"Test vectors for Status List encoding" appendix, CBOR encodings as given there, and
its Status List Token in CWT form): if this reader gets them right, it is fit to judge
the lists this service writes.
"""

from __future__ import annotations

import cbor2
import pytest

from .decoder import SUB, TTL, TYP, read_status_list, read_token

# "Status List": 16 entries of 1 bit are b9 a3; 12 entries of 2 bits are c9 44 f9.
SHORT_1 = ("a2646269747301636c73744a78dadbb918000217015d",
           [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1])
SHORT_2 = ("a2646269747302636c73744b78da3be9f2130003df0207",
           [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3])

# "Test vectors": 2**20 entries, all 0 but these.
SET_INDEXES = (0, 1993, 25460, 159495, 495669, 554353, 645645, 723232, 854545, 934534, 1000345)
LONG_1 = (
    "a2646269747301636c737458bd78daeddc010dc0200c0041a88249400ad2903e0f4b"
    "ba00bd93f002beb7a2a2010000a91e09000000000000000000000000000000807296"
    "04000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000005c6f4800000000000000fc2c240000000000000000000000be1b12"
    "000000000000000000ecaa4b000000000000000000000000000000009b0b09000000"
    "00000000000038de9400000000000000002a30cc010000000080642f0bd8011b",
    dict.fromkeys(SET_INDEXES, 1))
LONG_2 = (
    "a2646269747302636c737459013d78daeddb310d00211000412ea1a04004fe5520ed"
    "357c28c81d3312b6df68bc65480000000000406e2101000000000000000000000000"
    "0000000000000000000000000000000000000040795b020000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000"
    "0080f4ba0400000000000000000000000000406d764a000000000000000000000000"
    "000000000000000000e0922101000000000000000000000000000000000000fc1312"
    "00000000000000000000000000000000000000000000000000000000000000c0912e"
    "01000000000000000000000000000000000000c07d4b020000000000000000000000"
    "00000000a8614a0000000000000000000000406a1fcd60010c",
    dict(zip(SET_INDEXES, (1, 2, 1, 3, 1, 1, 2, 1, 1, 2, 3))))

# "Status List Token in CWT Format" (ES256-signed: the container is what is read here)
CWT_EXAMPLE = (
    "d2845820a2012610781a6170706c69636174696f6e2f7374617475736c6973742b63"
    "7774a1044231325850a502782168747470733a2f2f6578616d706c652e636f6d2f73"
    "74617475736c697374732f31061a648c5bea041a8898dfea19fffe19a8c019fffda2"
    "646269747301636c73744a78dadbb918000217015d584093fa4d01032b18c35e2fe1"
    "101b77fd6cc9440022caa4694450c4e4e9feab4e99d1fa6d9772ce2bf3a12e0323de"
    "d7c982c5e101a5e67f0cbc1e2b6f57ce99c279")


@pytest.mark.parametrize(("encoded", "expected"), [SHORT_1, SHORT_2], ids=["1-bit", "2-bits"])
def test_the_drafts_short_lists(encoded: str, expected: list[int]) -> None:
    bits, array = read_status_list(cbor2.loads(bytes.fromhex(encoded)))
    read = read_token(cbor2.dumps([b"", {}, cbor2.dumps({65533: cbor2.loads(bytes.fromhex(encoded))}),
                                   bytes(64)]))
    assert read.entries(len(expected)) == expected
    assert bits == read.bits and array == read.array


@pytest.mark.parametrize(("encoded", "set_entries"), [LONG_1, LONG_2], ids=["1-bit", "2-bits"])
def test_the_drafts_test_vectors(encoded: str, set_entries: dict[int, int]) -> None:
    status_list = cbor2.loads(bytes.fromhex(encoded))
    read = read_token(cbor2.dumps([b"", {}, cbor2.dumps({65533: status_list}), bytes(64)]))
    assert len(read.array) * 8 // read.bits == 1 << 20
    entries = read.entries()
    assert {i: v for i, v in enumerate(entries) if v} == set_entries


def test_the_drafts_status_list_token() -> None:
    read = read_token(bytes.fromhex(CWT_EXAMPLE))
    assert read.protected[TYP] == "application/statuslist+cwt"
    assert read.claims[SUB] == "https://example.com/statuslists/1" and read.claims[TTL] == 43200
    assert read.entries(16) == SHORT_1[1]
