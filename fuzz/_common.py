"""What both fuzz harnesses share: test keys, encoders, the twins, the checks.

Independent of the code under test: cbor2 encodes, PyNaCl signs, zlib
compresses, base45 is written here from RFC 9285, and ``oracle_*`` re-check a
VALID verdict with cbor2 + PyNaCl.

The keys are seeded from fixed labels: they are test keys, public by design,
never used outside the fuzzers.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import sys
import zlib
from pathlib import Path
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import atheris

# Run from a checkout without installing: the project root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cbor2  # noqa: E402
from nacl.exceptions import BadSignatureError  # noqa: E402
from nacl.signing import SigningKey, VerifyKey  # noqa: E402

# Instrument the Python twin (coverage feedback for libFuzzer). The compiled
# twin is instrumented only when built with clang and FASTPATH_FUZZ=1 (see
# fuzz/README.md); in any build it is compared with the Python twin on every
# input.
with atheris.instrument_imports(include=["fastpath"]):
    import fastpath  # noqa: E402
    from fastpath import _verify_py as PY  # noqa: E402

from fastpath import codes  # noqa: E402


def compiled_twin() -> ModuleType:
    """The compiled twin; a fuzz run without it would compare Python with itself."""
    return importlib.import_module("fastpath._verify_c")


C = compiled_twin()

NOW = 1767225600  # 2026-01-01T00:00:00Z, as the public vectors
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
ISSUERS = ["CN-310000", "CN-110000"]


def _key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"fastpath-fuzz:" + label.encode()).digest())


ACTIVE = _key("active")
RETIRED = _key("retired")
REVOKED = _key("revoked")
STRANGER = _key("stranger")  # not in the trust list
CARD = _key("card")
STATUS = _key("status")      # a Status List signer (use "status"): never a permit token's


def kid_of(key: SigningKey) -> bytes:
    return hashlib.sha256(bytes(key.verify_key)).digest()[:8]


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwk(key: SigningKey, status: str, use: str = "sig") -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(bytes(key.verify_key)),
            "kid": _b64url(kid_of(key)), "alg": "EdDSA", "use": use, "iss": ISSUERS,
            "status": status}


TRUST_JSON = json.dumps({"keys": [_jwk(ACTIVE, "active"), _jwk(RETIRED, "retired"),
                                  _jwk(REVOKED, "revoked"), _jwk(STATUS, "active", "status")]})
# The permit issuers' keys only: a VALID permit token signed by another is a failure.
PUBLIC_KEYS = {kid_of(k): (bytes(k.verify_key), s)
               for k, s in ((ACTIVE, "active"), (RETIRED, "retired"), (REVOKED, "revoked"))}
SIGNERS = (ACTIVE, RETIRED, REVOKED, STRANGER, STATUS)


def new_trust() -> fastpath.TrustList:
    return fastpath.TrustList.from_jwks(TRUST_JSON)


# --- encoders -------------------------------------------------------------------
def base45_encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % 45, n // 45
        d, e = n % 45, n // 45
        out += [BASE45_ALPHABET[c], BASE45_ALPHABET[d], BASE45_ALPHABET[e]]
    if len(data) % 2:
        out += [BASE45_ALPHABET[data[-1] % 45], BASE45_ALPHABET[data[-1] // 45]]
    return "".join(out)


def qr(message: bytes, prefix: str = "WP1:") -> str:
    return prefix + base45_encode(zlib.compress(message, 9))


def _bstr(data: bytes) -> bytes:
    return cbor2.dumps(data)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign1(key: SigningKey, payload: bytes, protected: bytes | None = None,
          unprotected: bytes = b"\xa0", tag: bool = True) -> bytes:
    """A COSE_Sign1 from encoded parts, signed by ``key`` over the parts as given."""
    if protected is None:
        protected = cbor2.dumps({1: -8, 4: kid_of(key)})
    signature = key.sign(sig_structure(protected, payload)).signature
    body = b"\x84" + _bstr(protected) + unprotected + _bstr(payload) + _bstr(signature)
    return b"\xd2" + body if tag else body


PERMIT: dict[str, Any] = {
    "pn": "WP3100002025000123", "n": "DOE, JANE", "nat": "CAN", "dob": "1988-02-29",
    "cat": "B", "emp": "91310000MA1FL0AB2C", "vf": "2025-03-01", "vt": "2027-02-28",
    "v": 3, "ssn": "310000198802290021", "cn": "S31000012345678",
}


def claims(profile: str, iat: int = NOW - 30) -> dict[int, Any]:
    exp = iat + 60 if profile == "ES1" else iat + 3 * 365 * 86400
    result: dict[int, Any] = {1: "CN-310000", 4: exp, 6: iat}
    if profile == "ES1":
        result[7] = b"cti-0123456789ab"
    if profile == "CARD":
        result[-70002] = {"cn": PERMIT["cn"], "ssn": PERMIT["ssn"], "pn": PERMIT["pn"],
                          "cpk": bytes(CARD.verify_key)}
    else:
        result[-70001] = dict(PERMIT)
    # WIRE-FORMAT 8's status claim, so that edits of a valid token reach its checks too
    result[65535] = {"status_list": {"idx": 1234, "uri": "https://pv.example/v1/status-lists/"
                                     + ("cards" if profile == "CARD" else "permits")}}
    return result


def edit(data: bytes, fdp: atheris.FuzzedDataProvider) -> bytes:
    """A few byte edits, insertions, cuts and bit flips: mutations of a valid message (all harnesses)."""
    buffer = bytearray(data)
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        if not buffer:
            break
        what = fdp.ConsumeIntInRange(0, 3)
        position = fdp.ConsumeIntInRange(0, len(buffer) - 1)
        if what == 0:
            buffer[position] = fdp.ConsumeInt(1) & 0xFF
        elif what == 1:
            buffer[position:position] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
        elif what == 2:
            del buffer[position:position + fdp.ConsumeIntInRange(1, 8)]
        else:
            buffer[position] ^= 1 << fdp.ConsumeIntInRange(0, 7)
    return bytes(buffer)



# --- the checks -------------------------------------------------------------------
KNOWN_RESULTS = frozenset(codes.ALL_RESULTS)
PROFILES = {None, codes.PROFILE_WP1, codes.PROFILE_ES1, codes.PROFILE_CARD}


def check_verdict(verdict: Any) -> None:
    assert isinstance(verdict, fastpath.Verdict), type(verdict)
    assert verdict.result in KNOWN_RESULTS, verdict
    assert isinstance(verdict.reasons, tuple) and all(isinstance(r, str) for r in verdict.reasons)
    assert (verdict.result == codes.VALID) == (verdict.reasons == ()), verdict
    assert verdict.profile in PROFILES, verdict
    verdict.as_dict()  # serialisable whatever it holds


def same(c_verdict: Any, py_verdict: Any, what: str) -> None:
    """Both twins gave the same verdict (all fields but ``cached``)."""
    if c_verdict != py_verdict:
        raise AssertionError(f"twins disagree on {what}:\n  c:  {c_verdict!r} {c_verdict.as_dict()}\n"
                             f"  py: {py_verdict!r} {py_verdict.as_dict()}")


def strict_b45(text: str) -> bytes:
    values = [BASE45_ALPHABET.index(ch) for ch in text]
    out = bytearray()
    for i in range(0, len(values) - len(values) % 3, 3):
        out += (values[i] + values[i + 1] * 45 + values[i + 2] * 2025).to_bytes(2, "big")
    if len(values) % 3:
        out.append(values[-2] + values[-1] * 45)
    return bytes(out)


def oracle_cose(message: bytes, profile: str) -> dict[Any, Any]:
    """Re-check a message whose verdict was VALID: a COSE_Sign1 with alg EdDSA,
    a trusted non-revoked kid and a signature that PyNaCl accepts. Returns the claims."""
    cose = cbor2.loads(message)
    if isinstance(cose, cbor2.CBORTag):
        assert cose.tag == 18, cose.tag
        cose = cose.value
    # cbor2 5 decodes arrays to lists and maps to dicts; cbor2 6 to tuples and frozendicts
    assert isinstance(cose, (list, tuple)) and len(cose) == 4, cose
    protected_bytes, unprotected, payload, signature = cose
    protected = cbor2.loads(protected_bytes)
    assert protected.get(1) == -8 and 2 not in protected and 2 not in unprotected, protected
    kid = protected.get(4, unprotected.get(4))
    public_key, status = PUBLIC_KEYS[kid]
    assert status != "revoked"
    try:
        VerifyKey(public_key).verify(sig_structure(protected_bytes, payload), signature)
    except BadSignatureError:
        raise AssertionError("VALID verdict on a bad signature") from None
    body = cbor2.loads(payload)
    assert isinstance(body, Mapping) and body[1] in ISSUERS
    assert (-70002 if profile == "CARD" else -70001) in body
    return body


def _one_item(data: bytes) -> tuple[bool, Any]:
    """(True, item) when cbor2 reads ``data`` as exactly one item, else (False, None).
    (cbor2.loads ignores bytes after the first item.)"""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception:  # anything cbor2 cannot read, whatever it raises
        return False, None
    return stream.tell() == len(data), item


def oracle_structure(message: bytes, verdict: Any) -> None:
    """WIRE-FORMAT 2's order of the structure checks, on any verdict of a message that
    cbor2 reads as a COSE_Sign1 of the right shape: a signature of any length but 64
    is MALFORMED whatever the header says; an empty protected bstr has no alg
    (UNSUPPORTED); a verdict past the header means the protected bstr held exactly
    one map. Our reader is stricter than cbor2 (preferred serialization, duplicate
    keys, ...), so a ``cbor.*`` reason is always allowed, as are the checks before
    the COSE structure's."""
    whole, cose = _one_item(message)
    if isinstance(cose, cbor2.CBORTag):
        whole, cose = whole and cose.tag == 18, cose.value
    if not (whole and isinstance(cose, (list, tuple)) and len(cose) == 4 and type(cose[0]) is bytes
            and isinstance(cose[1], Mapping) and type(cose[2]) is bytes and type(cose[3]) is bytes):
        return
    reason = verdict.reasons[0] if verdict.reasons else None
    if reason is not None and reason.startswith(("input.", "prefix.", "qr.", "base45.", "zlib.", "card.too_long",
                                                 "cbor.")):
        return  # checks before the structure's, or our stricter CBOR
    protected, signature = cose[0], cose[3]
    if len(signature) != 64:
        assert reason == codes.R_COSE_SIGNATURE_LENGTH, (verdict, len(signature))
    elif protected == b"":
        assert reason == codes.R_HEADER_ALG_MISSING, verdict
    elif reason not in (codes.R_COSE_STRUCTURE, codes.R_COSE_SIGNATURE_LENGTH, codes.R_COSE_PROTECTED):
        one, header = _one_item(protected)
        assert one and isinstance(header, Mapping), (verdict, protected)


def oracle_qr(text: str, verdict: Any, now: int) -> None:
    prefix, data = text[:4], text[4:]
    assert prefix in ("WP1:", "ES1:"), prefix
    message = zlib.decompress(strict_b45(data))
    body = oracle_cose(message, prefix[:3])
    assert body[6] - 60 <= now < body[4] + 60, (body, now)
    assert verdict.permit["pn"] == body[-70001]["pn"]


def fuzz_main(test_one_input: Any) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
