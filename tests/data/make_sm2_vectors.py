"""Make the SM2 conformance vectors of WIRE-FORMAT 9: ``tests/data/sm2-vectors.json``.

    python -m tests.data.make_sm2_vectors            # rewrites the file
    python -m tests.data.make_sm2_vectors --check    # exit 1 if the file differs

Independent of both verifier twins: the SM2 signatures and SM3 hashes are gmssl's
(the pure-Python GB/T 32918 implementation on PyPI, neither OpenSSL, which the
compiled twin uses, nor gmalg, which the Python twin uses); ``Z_A``, CBOR (cbor2),
zlib and base45 are written here from the standards. The nonces are derived from
labels, so the file is the same on every run (``tests/fastpath/test_sm2_vectors.py``
checks that it is what this script makes). Every key is derived from a public
label: these are test keys, never to be trusted anywhere.

What the vectors cover (their ``name`` says which): valid codes with the default
and an explicit user id, a high and a low ``s``, an ES1 code and a card certificate;
a wrong user id both ways, SHA-256 in place of SM3, SM3 without ``Z_A``, ``r`` or
``s`` of 0, n or 2**256 - 1, ``t = r + s = n``, a signature whose ``[s]G + [t]P`` is
the point at infinity with ``r = e``, DER and 65-byte signatures, algorithm
confusion both ways, a non-preferred and a neighbouring ``alg``, a revoked key;
and trust lists that must be refused: off-curve, the point at infinity as zeros,
a non-canonical x (x + p), short coordinates, kids over other encodings, another
curve, an empty ``distid``, a private key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import cbor2
from gmssl import sm2 as gmssl_sm2
from gmssl import sm3 as gmssl_sm3
from nacl.signing import SigningKey

OUT = Path(__file__).with_name("sm2-vectors.json")
NOW = 1767225600  # 2026-01-01T00:00:00Z, the time of the public vectors (vectors.json)

# GB/T 32918.5, the recommended curve.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
DEFAULT_ID = b"1234567812345678"
ALG_SM2_SM3, ALG_EDDSA = -65537, -8
BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

PERMIT = {"pn": "WP3100002025000123", "n": "DOE, JANE", "nat": "CAN", "dob": "1988-02-29", "cat": "B",
          "emp": "91310000MA1FL0AB2C", "vf": "2025-03-01", "vt": "2027-02-28", "v": 3,
          "ssn": "310000198802290021", "cn": "S31000012345678"}


# --- encodings ----------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def base45(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        out += [BASE45[n % 45], BASE45[n // 45 % 45], BASE45[n // 2025]]
    if len(data) % 2:
        out += [BASE45[data[-1] % 45], BASE45[data[-1] // 45]]
    return "".join(out)


def i32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def sm3(data: bytes) -> bytes:
    return bytes.fromhex(gmssl_sm3.sm3_hash(list(data)))


# --- SM2, with gmssl doing the curve work --------------------------------------------
class Key:
    """An SM2 test key from a public label (d in [1, n - 2])."""

    def __init__(self, label: str, user_id: bytes = DEFAULT_ID) -> None:
        self.label = label
        self.user_id = user_id
        self.d = int.from_bytes(hashlib.sha512(b"sm2-vectors key:" + label.encode()).digest(), "big") % (N - 2) + 1
        curve = gmssl_sm2.CryptSM2(private_key="%064x" % self.d, public_key="")
        public = curve._kg(self.d, curve.ecc_table["g"])  # gmssl: [d]G as 128 hex digits
        self.x, self.y = int(public[:64], 16), int(public[64:], 16)
        assert (self.y * self.y - self.x ** 3 - A * self.x - B) % P == 0
        self.signer = gmssl_sm2.CryptSM2(private_key="%064x" % self.d, public_key=public)

    @property
    def point(self) -> bytes:
        return b"\x04" + i32(self.x) + i32(self.y)

    @property
    def kid(self) -> bytes:
        return hashlib.sha256(self.point).digest()[:8]  # WIRE-FORMAT 9

    def z(self, user_id: bytes | None = None) -> bytes:
        """Z_A of GB/T 32918.2 5.5 for ``user_id`` (by default the key's)."""
        user_id = self.user_id if user_id is None else user_id
        entl = (len(user_id) * 8).to_bytes(2, "big")
        return sm3(entl + user_id + i32(A) + i32(B) + i32(GX) + i32(GY) + i32(self.x) + i32(self.y))

    def e(self, message: bytes, *, user_id: bytes | None = None, digest: str = "sm3") -> bytes:
        if digest == "sm3":
            return sm3(self.z(user_id) + message)
        if digest == "sha256":
            return hashlib.sha256(self.z(user_id) + message).digest()
        if digest == "sm3-no-z":
            return sm3(message)
        raise ValueError(digest)

    def sign_e(self, e: bytes, nonce_label: str, want: Any = None) -> tuple[int, int]:
        """gmssl's SM2 signature of the digest e, with a nonce from a label (deterministic):
        the first counter whose signature ``want(r, s)`` accepts."""
        for counter in range(10_000):
            k = int.from_bytes(hashlib.sha256(f"{self.label}:{nonce_label}:{counter}".encode()).digest(), "big") % N
            if k == 0:
                continue
            signature = self.signer.sign(e, "%064x" % k)
            if signature is None:
                continue
            r, s = int(signature[:64], 16), int(signature[64:], 16)
            if want is None or want(r, s):
                return r, s
        raise RuntimeError("no nonce gave the wanted signature")

    def jwk(self, **members: Any) -> dict[str, Any]:
        jwk = {"kty": "EC", "crv": "SM2", "x": b64url(i32(self.x)), "y": b64url(i32(self.y)),
               "kid": b64url(self.kid), "alg": "SM2-SM3", "use": "sig", "iss": ["CN-310000"], "status": "active"}
        if self.user_id != DEFAULT_ID:
            jwk["distid"] = b64url(self.user_id)
        jwk.update(members)
        return {k: v for k, v in jwk.items() if v is not None}


# --- COSE --------------------------------------------------------------------------------
def protected(alg: int, kid: bytes) -> bytes:
    return cbor2.dumps({1: alg, 4: kid})


def sig_structure(protected_bytes: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected_bytes, b"", payload])


def cose(protected_bytes: bytes, payload: bytes, signature: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(18, [protected_bytes, {}, payload, signature]))


def claims(profile: str = "WP1", iss: str = "CN-310000") -> bytes:
    iat = NOW - (30 if profile == "ES1" else 3600)  # an ES1 code lives 60 s
    body: dict[int, Any] = {1: iss, 4: iat + (60 if profile == "ES1" else 3 * 365 * 86400), 6: iat}
    if profile == "ES1":
        body[7] = b"cti-sm2-vectors0"
    if profile == "CARD":
        body[4] = iat + 5 * 365 * 86400
        body[-70002] = {"cn": PERMIT["cn"], "ssn": PERMIT["ssn"], "pn": PERMIT["pn"], "cpk": bytes(card_key().verify_key)}
    else:
        body[-70001] = dict(PERMIT)
    return cbor2.dumps(body)


def card_key() -> SigningKey:
    return SigningKey(hashlib.sha256(b"sm2-vectors card").digest())


def raw(r: int, s: int) -> bytes:
    return i32(r) + i32(s)


def der(r: int, s: int) -> bytes:
    def integer(v: int) -> bytes:
        body = v.to_bytes((v.bit_length() + 8) // 8, "big")  # one leading zero when the top bit is set
        return b"\x02" + bytes([len(body)]) + body
    content = integer(r) + integer(s)
    return b"\x30" + bytes([len(content)]) + content


def _sqrt(v: int) -> int | None:
    root = pow(v, (P + 1) // 4, P)  # p = 3 (mod 4)
    return root if root * root % P == v % P else None


def point_with_small_x() -> tuple[int, int]:
    """A curve point whose x is below 2**256 - p, so that x + p still fits 32 bytes."""
    for x in range(1, 1000):
        y = _sqrt(x ** 3 + A * x + B)
        if y is not None:
            return x, y
    raise RuntimeError("no small x")


# --- the vectors ---------------------------------------------------------------------------
def build() -> dict[str, Any]:
    default = Key("issuer A (default user id)")
    explicit = Key("issuer B (explicit user id)", b"permits@CN-110000")
    revoked = Key("issuer C (revoked)")
    ed25519 = SigningKey(hashlib.sha256(b"sm2-vectors ed25519 issuer").digest())
    ed_public = bytes(ed25519.verify_key)
    ed_kid = hashlib.sha256(ed_public).digest()[:8]
    trust = {"keys": [
        default.jwk(),
        explicit.jwk(iss=["CN-110000"]),
        revoked.jwk(status="revoked"),
        {"kty": "OKP", "crv": "Ed25519", "x": b64url(ed_public), "kid": b64url(ed_kid), "alg": "EdDSA",
         "use": "sig", "iss": ["CN-310000"], "status": "active"},
    ]}
    qr: list[dict[str, Any]] = []

    def add(name: str, message: bytes, result: str, reason: str | None, prefix: str = "WP1:") -> None:
        qr.append({"name": name, "text": prefix + base45(zlib.compress(message, 9)), "result": result,
                   "reasons": [] if reason is None else [reason]})

    def signed(key: Key, nonce: str, payload: bytes | None = None, *, alg: int = ALG_SM2_SM3,
               kid: bytes | None = None, user_id: bytes | None = None, digest: str = "sm3",
               want: Any = None) -> tuple[bytes, bytes, int, int]:
        payload = claims() if payload is None else payload
        prot = protected(alg, key.kid if kid is None else kid)
        r, s = key.sign_e(key.e(sig_structure(prot, payload), user_id=user_id, digest=digest), nonce, want)
        return prot, payload, r, s

    prot, payload, r, s = signed(default, "valid")
    add("WP1, default user id", cose(prot, payload, raw(r, s)), "VALID", None)
    good = (prot, payload, r, s)
    prot_hi, payload_hi, r_hi, s_hi = signed(default, "high s", want=lambda r, s: s > N // 2)
    add("WP1, high s (s > n/2): accepted, SM2 has no low-s rule", cose(prot_hi, payload_hi, raw(r_hi, s_hi)),
        "VALID", None)
    p2, pl2, r2, s2 = signed(default, "low s", want=lambda r, s: s < N // 2)
    add("WP1, low s (s < n/2)", cose(p2, pl2, raw(r2, s2)), "VALID", None)
    p2, pl2, r2, s2 = signed(default, "es1", claims("ES1"))
    add("ES1, default user id", cose(p2, pl2, raw(r2, s2)), "VALID", None, "ES1:")
    p2, pl2, r2, s2 = signed(explicit, "explicit", claims(iss="CN-110000"))
    add("WP1, the key's distid as user id", cose(p2, pl2, raw(r2, s2)), "VALID", None)

    # Wrong user id, both ways; wrong hash.
    p2, pl2, r2, s2 = signed(explicit, "explicit signed with default", claims(iss="CN-110000"), user_id=DEFAULT_ID)
    add("wrong user id: the key has a distid, signed with the default id", cose(p2, pl2, raw(r2, s2)),
        "BAD_SIGNATURE", "signature.invalid")
    p2, pl2, r2, s2 = signed(default, "default signed with another", user_id=b"1234567812345679")
    add("wrong user id: the key has the default id, signed with another", cose(p2, pl2, raw(r2, s2)),
        "BAD_SIGNATURE", "signature.invalid")
    p2, pl2, r2, s2 = signed(default, "sha256", digest="sha256")
    add("wrong hash: e = SHA-256(Z || M), not SM3", cose(p2, pl2, raw(r2, s2)), "BAD_SIGNATURE", "signature.invalid")
    p2, pl2, r2, s2 = signed(default, "no z", digest="sm3-no-z")
    add("wrong hash: e = SM3(M), without Z", cose(p2, pl2, raw(r2, s2)), "BAD_SIGNATURE", "signature.invalid")

    # r and s out of range, t = 0, the point at infinity.
    prot, payload, r, s = good
    for label, rr, ss in (("r = 0", 0, s), ("s = 0", r, 0), ("r = n", N, s), ("s = n", r, N),
                          ("r = 2**256 - 1", 2**256 - 1, s), ("s = 2**256 - 1", r, 2**256 - 1),
                          ("s = n + 1 (1 mod n)", r, N + 1), ("t = r + s = n", r, N - r)):
        add(f"out of range: {label}", cose(prot, payload, raw(rr, ss)), "BAD_SIGNATURE", "signature.invalid")
    e = int.from_bytes(default.e(sig_structure(prot, payload)), "big") % N
    s_inf = (-e * default.d * pow(1 + default.d, -1, N)) % N  # [s]G + [r + s]P = O
    add("[s]G + [t]P is the point at infinity, and r = e mod n", cose(prot, payload, raw(e, s_inf)),
        "BAD_SIGNATURE", "signature.invalid")
    add("payload changed after signing", cose(prot, payload.replace(b"DOE, JANE", b"DOE, JOHN"), raw(r, s)),
        "BAD_SIGNATURE", "signature.invalid")
    add("another key's kid: A's signature under B's kid",
        cose(protected(ALG_SM2_SM3, explicit.kid), payload, raw(r, s)), "BAD_SIGNATURE", "signature.invalid")

    # Encodings of the signature and of alg.
    add("signature DER-encoded (ECDSA-Sig-Value)", cose(prot, payload, der(r, s)), "MALFORMED", "cose.signature_length")
    add("signature as 65 bytes (r || s with a leading 0x00)", cose(prot, payload, b"\x00" + raw(r, s)),
        "MALFORMED", "cose.signature_length")
    p2, pl2, r2, s2 = signed(default, "alg eddsa", alg=ALG_EDDSA)
    add("algorithm confusion: alg EdDSA (-8) with an SM2 key's kid", cose(p2, pl2, raw(r2, s2)),
        "UNKNOWN_KEY", "key.alg")
    prot_ed = protected(ALG_SM2_SM3, ed_kid)
    add("algorithm confusion: alg SM2 (-65537) with an Ed25519 key's kid",
        cose(prot_ed, payload, ed25519.sign(sig_structure(prot_ed, payload)).signature), "UNKNOWN_KEY", "key.alg")
    non_preferred = b"\xa2\x01\x3b" + (65536).to_bytes(8, "big") + b"\x04\x48" + default.kid
    p2, pl2, r2, s2 = default_signed_raw(default, non_preferred, payload)
    add("alg -65537 in a non-preferred (8-byte) encoding", cose(non_preferred, payload, raw(r2, s2)),
        "MALFORMED", "cbor.non_preferred")
    p2, pl2, r2, s2 = signed(default, "alg -65538", alg=-65538)
    add("alg -65538, the neighbour of SM2's", cose(p2, pl2, raw(r2, s2)), "UNSUPPORTED", "header.alg_unsupported")
    p2, pl2, r2, s2 = signed(revoked, "revoked")
    add("a revoked SM2 key", cose(p2, pl2, raw(r2, s2)), "KEY_REVOKED", "key.revoked")

    # Card reads: the certificate SM2-signed, the card's own signature Ed25519.
    challenge = hashlib.sha256(b"sm2-vectors challenge").digest()
    card_signature = card_key().sign(b"SSC-AUTH-1" + challenge).signature
    cards = []
    for name, user_id, result, reason in (("card read, certificate SM2-signed", None, "VALID", None),
                                          ("card certificate signed with another user id", b"other", "BAD_SIGNATURE",
                                           "signature.invalid")):
        p2, pl2, r2, s2 = signed(default, name, claims("CARD"), user_id=user_id)
        cards.append({"name": name, "certificate_hex": cose(p2, pl2, raw(r2, s2)).hex(),
                      "challenge_hex": challenge.hex(), "signature_hex": card_signature.hex(),
                      "result": result, "reasons": [] if reason is None else [reason]})

    return {
        "about": "SM2 conformance vectors of WIRE-FORMAT 9. Verify the qr and card vectors at 'now' against "
                 "'trust_list'; each of 'refused_trust_lists' must be refused as a whole. Made by "
                 "tests/data/make_sm2_vectors.py with gmssl (neither twin's SM2 library); test keys from public "
                 "labels, never to be trusted.",
        "made_with": "gmssl 3.2.2 (SM2 signing, SM3), cbor2, zlib",
        "now": NOW,
        "trust_list": trust,
        "qr": qr,
        "card": cards,
        "refused_trust_lists": refused_lists(default),
    }


def default_signed_raw(key: Key, protected_bytes: bytes, payload: bytes) -> tuple[bytes, bytes, int, int]:
    """A valid signature over a protected header given as raw bytes."""
    r, s = key.sign_e(key.e(sig_structure(protected_bytes, payload)), "raw protected")
    return protected_bytes, payload, r, s


def refused_lists(key: Key) -> list[dict[str, Any]]:
    """Trust lists of one key each, every one to be refused (the substring of the reason given)."""
    x, y = key.x, key.y
    small_x, small_y = point_with_small_x()

    def ec(xb: bytes, yb: bytes, kid_over: bytes | None = None, **members: Any) -> dict[str, Any]:
        kid_over = b"\x04" + xb + yb if kid_over is None else kid_over
        jwk = {"kty": "EC", "crv": "SM2", "x": b64url(xb), "y": b64url(yb),
               "kid": b64url(hashlib.sha256(kid_over).digest()[:8]), "use": "sig", "iss": ["CN-310000"],
               "status": "active"}
        jwk.update(members)
        return {k: v for k, v in jwk.items() if v is not None}

    # A valid P-256 point (its generator), under crv P-256 and under crv SM2.
    p256 = (bytes.fromhex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
            bytes.fromhex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"))
    cases = [
        ("off the curve: y + 1", ec(i32(x), i32((y + 1) % P)), "not a point of the SM2 curve"),
        ("the point at infinity written as x = y = 0", ec(i32(0), i32(0)), "not a point of the SM2 curve"),
        ("non-canonical x: x + p of a valid point", ec(i32(small_x + P), i32(small_y)), "not below the field prime"),
        ("y = p", ec(i32(x), i32(P)), "not below the field prime"),
        ("x of 31 bytes", ec(i32(x)[1:], i32(y)), "32 bytes"),
        ("y of 33 bytes", ec(i32(x), b"\x00" + i32(y)), "32 bytes"),
        ("kid over the compressed point", ec(i32(x), i32(y), bytes([2 + (y & 1)]) + i32(x)), "kid does not match"),
        ("kid over x || y without 0x04", ec(i32(x), i32(y), i32(x) + i32(y)), "kid does not match"),
        ("the P-256 generator under crv SM2", ec(*p256), "not a point of the SM2 curve"),
        ("crv P-256", ec(*p256, crv="P-256"), "crv must be 'SM2'"),
        ("crv SM2 under kty OKP", {**ec(i32(x), i32(y)), "kty": "OKP"}, "crv must be 'Ed25519'"),
        ("alg ES256 on an SM2 key", ec(i32(x), i32(y), alg="ES256"), "alg must be"),
        ("empty distid", ec(i32(x), i32(y), distid=""), "distid"),
        ("distid padded", ec(i32(x), i32(y), distid="YWJj="), "distid"),
        ("a private key d in the trust list", ec(i32(x), i32(y), d=b64url(i32(key.d))), "private key"),
    ]
    # the same point twice, once per user id: one kid, two keys
    twice = [ec(i32(x), i32(y)), ec(i32(x), i32(y), distid=b64url(b"another id"))]
    lists = [{"name": name, "trust_list": {"keys": [jwk]}, "refused_because": because} for name, jwk, because in cases]
    lists.append({"name": "one point under two user ids (one kid)", "trust_list": {"keys": twice},
                  "refused_because": "duplicate kid"})
    return lists


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'differs from what this script makes'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
