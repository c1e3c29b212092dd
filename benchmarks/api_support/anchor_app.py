"""The anchor of the API benchmark: a bare Litestar endpoint that only verifies.

DESIGN target: ``POST /v1/verify/qr`` serves at least 0.6x the requests/s of this
endpoint, on the same uvicorn settings with one worker each. The handler takes the
same request body as ``/v1/verify/qr`` and runs the one step no verifier can skip,
libsodium's ``crypto_sign_verify_detached`` over the same code's signed bytes, and
nothing else: no base45, no inflate, no CBOR, no index.

Started by uvicorn as a factory (``benchmarks.api_support.anchor_app:create_anchor_app``)
with the path of a JSON file ``{"signed_hex", "signature_hex", "public_key_hex"}``
in ``API_BENCH_ANCHOR`` (bench-only code; the service reads its settings elsewhere).
With ``"alg": "SM2-SM3"`` in the file (an SM2 population, WIRE-FORMAT 9), the one
step is OpenSSL's bare SM2 verify instead (``fastpath._sm2_c.bare_verify``: the
libcrypto calls alone, on a ready DER signature, the GIL released), the
public key being SM2's 65-byte point.
"""

from __future__ import annotations

import ctypes
import json
import os

import msgspec
import nacl._sodium
from litestar import Litestar, post

ANCHOR_ENV = "API_BENCH_ANCHOR"

# The same shared library PyNaCl ships and the fastpath calls; ctypes releases the GIL.
_sodium = ctypes.CDLL(nacl._sodium.__file__)
_verify_detached = _sodium.crypto_sign_verify_detached
_verify_detached.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p)
_verify_detached.restype = ctypes.c_int


class QrRequest(msgspec.Struct):
    qr: str
    terminal: str = ""


class AnchorVerdict(msgspec.Struct):
    result: str


def create_anchor_app() -> Litestar:
    with open(os.environ[ANCHOR_ENV], encoding="utf-8") as handle:
        vector = json.load(handle)
    signed = bytes.fromhex(vector["signed_hex"])
    signature = bytes.fromhex(vector["signature_hex"])
    public_key = bytes.fromhex(vector["public_key_hex"])
    signed_len = len(signed)
    if vector.get("alg") == "SM2-SM3":
        return _sm2_anchor(signed, signature, public_key)

    @post("/verify", status_code=200)
    async def verify(data: QrRequest) -> AnchorVerdict:
        ok = _verify_detached(signature, signed, signed_len, public_key) == 0
        return AnchorVerdict(result="VALID" if ok else "BAD_SIGNATURE")

    return Litestar(route_handlers=[verify], openapi_config=None, debug=False)


def _sm2_anchor(signed: bytes, signature: bytes, point: bytes) -> Litestar:
    from fastpath import _sm2_c
    from fastpath._sm2 import DEFAULT_USER_ID

    key = _sm2_c.OpenSslKey(point, DEFAULT_USER_ID)
    der = _sm2_c.der_signature(signature)

    @post("/verify", status_code=200)
    async def verify(data: QrRequest) -> AnchorVerdict:
        ok = _sm2_c.bare_verify(key, der, signed)
        return AnchorVerdict(result="VALID" if ok else "BAD_SIGNATURE")

    return Litestar(route_handlers=[verify], openapi_config=None, debug=False)
