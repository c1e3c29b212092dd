"""Fuzz ``verify_qr`` on both twins (atheris / libFuzzer).

Run (from the project root; the compiled twin must be built; fuzz/README.md has the
clang build that instruments the compiled twin too)::

    python3 fuzz/fuzz_verify_qr.py -runs=200000            # a bounded run
    python3 fuzz/fuzz_verify_qr.py -max_total_time=600 fuzz/corpus/qr   # keep a corpus

Each input is turned into a QR text in one of several ways, so that every layer
is reached (raw text; base45 of raw bytes; zlib of raw bytes; a valid signed
code with bytes edited; a signed token whose payload, protected header or
unprotected map is fuzz data). For each text it asserts:

- no exception escapes either twin, and the verdict is well formed (a known
  result code, reasons only when not VALID, a known profile);
- both twins give the same verdict (all fields but ``cached``), cold, and again
  through a shared verdict cache (a hit must equal the cold verdict);
- a VALID verdict is re-checked independently (cbor2 + PyNaCl): the text
  decodes to a COSE_Sign1 validly signed by a trusted, non-revoked key.
- any verdict keeps WIRE-FORMAT 2's order where cbor2 reads a COSE_Sign1 of the
  right shape (``oracle_structure``): a signature of any length but 64 is
  MALFORMED whatever the header says, an empty protected bstr is UNSUPPORTED
  (no alg), and nothing gets past the header unless the protected bstr held
  exactly one map.

A failure prints the offending input and exits non-zero (libFuzzer writes it to
``crash-*``; rerun with ``python3 fuzz/fuzz_verify_qr.py crash-...``).
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402
import cbor2  # noqa: E402

import _common as common  # noqa: E402
from _common import C, PY  # noqa: E402

TRUST_C = common.new_trust()
TRUST_PY = common.new_trust()
SHARED = common.new_trust()  # one verdict cache written and read by both twins
SHARED.cache_limit = 512     # small: eviction is exercised too

TEMPLATES = {
    profile: common.sign1(common.ACTIVE, cbor2.dumps(common.claims(profile)))
    for profile in ("WP1", "ES1")
}
PROTECTED = cbor2.dumps({1: -8, 4: common.kid_of(common.ACTIVE)})
TIMES = (common.NOW, common.NOW - 10**9, common.NOW + 10**9, 0, -1, 2**63 - 1, -(2**63))


def make_text(fdp: atheris.FuzzedDataProvider) -> str:
    mode = fdp.ConsumeIntInRange(0, 7)
    prefix = ("WP1:", "ES1:")[fdp.ConsumeIntInRange(0, 1)]
    if mode == 0:  # anything at all
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 700))
    if mode == 1:  # the base45 layer: mostly alphabet characters
        raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 700))
        return prefix + "".join(common.BASE45_ALPHABET[b % 46] if b % 46 < 45 else chr(b) for b in raw)
    if mode == 2:  # the zlib layer: base45 of arbitrary bytes, or of an edited stream
        if fdp.ConsumeBool():
            return prefix + common.base45_encode(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 500)))
        if fdp.ConsumeBool():  # around the 4096-byte cap, where the checks meet
            inflated = bytes([fdp.ConsumeInt(1) & 0xFF]) * fdp.ConsumeIntInRange(4090, 4102)
        else:
            inflated = TEMPLATES[prefix[:3]]
        stream = zlib.compress(inflated, fdp.ConsumeIntInRange(0, 9))
        return prefix + common.base45_encode(common.edit(stream, fdp))
    if mode == 3:  # the CBOR/COSE layer: arbitrary message bytes
        return common.qr(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600)), prefix)
    if mode == 4:  # a valid signed message, edited
        return common.qr(common.edit(TEMPLATES[prefix[:3]], fdp), prefix)
    signer = common.SIGNERS[fdp.ConsumeIntInRange(0, len(common.SIGNERS) - 1)]
    if mode == 5:  # claims: a signed payload of fuzz bytes, or a valid one edited
        if fdp.ConsumeBool():
            payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 500))
        else:
            payload = common.edit(cbor2.dumps(common.claims(prefix[:3])), fdp)
        protected = cbor2.dumps({1: -8, 4: common.kid_of(signer)})
        return common.qr(common.sign1(signer, payload, protected, tag=fdp.ConsumeBool()), prefix)
    if mode == 6:  # the header: signed fuzz protected bytes, or a valid one edited
        protected = (fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)) if fdp.ConsumeBool()
                     else common.edit(cbor2.dumps({1: -8, 4: common.kid_of(signer)}), fdp))
        payload = cbor2.dumps(common.claims(prefix[:3]))
        return common.qr(common.sign1(signer, payload, protected), prefix)
    # mode 7: the unprotected map (kid, crit, anything) beside a valid protected header
    unprotected = (fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)) if fdp.ConsumeBool()
                   else common.edit(cbor2.dumps({4: common.kid_of(signer)}), fdp))
    protected = PROTECTED if fdp.ConsumeBool() else cbor2.dumps({1: -8})
    payload = cbor2.dumps(common.claims(prefix[:3]))
    return common.qr(common.sign1(signer, payload, protected, unprotected), prefix)


def _message_of(text: str) -> bytes | None:
    """The COSE message inside a QR text as base45 + zlib read it independently, or None."""
    data = text[4:]
    if text[:4] not in ("WP1:", "ES1:") or not set(data) <= set(common.BASE45_ALPHABET) or len(data) % 3 == 1:
        return None
    try:
        return zlib.decompress(common.strict_b45(data))
    except (zlib.error, ValueError, IndexError, OverflowError):
        return None


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    now = TIMES[fdp.ConsumeIntInRange(0, len(TIMES) - 1)]
    text = make_text(fdp)
    c_verdict = C.verify_qr(text, TRUST_C, now, cache=False)
    py_verdict = PY.verify_qr(text, TRUST_PY, now, cache=False)
    common.check_verdict(c_verdict)
    common.check_verdict(py_verdict)
    common.same(c_verdict, py_verdict, repr(text))
    # Through one shared cache: whichever twin wrote the entry, a hit equals the cold verdict.
    first, second = (C, PY) if fdp.ConsumeBool() else (PY, C)
    common.same(first.verify_qr(text, SHARED, now), c_verdict, "a cached verify (1st) " + repr(text))
    common.same(second.verify_qr(text, SHARED, now), c_verdict, "a cached verify (2nd) " + repr(text))
    message = _message_of(text)
    if message is not None:
        common.oracle_structure(message, c_verdict)
    if c_verdict.ok:
        common.oracle_qr(text, c_verdict, now)


if __name__ == "__main__":
    common.fuzz_main(test_one_input)
