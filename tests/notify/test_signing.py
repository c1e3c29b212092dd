"""Standard Webhooks signatures: the spec's published vectors, and the `standardwebhooks`
package (an independent implementation) in both directions."""

from __future__ import annotations

import base64
import datetime as dt
import time

import pytest
import standardwebhooks
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.notify import signing
from verifier.notify.signing import SignatureError, Signer, sign_v1, sign_v1a, verify

# The published test vectors (standard-webhooks: libraries/python/tests/test_webhooks.py
# test_sign_function, libraries/go/webhook_asymmetric_test.go TestAsymmetricWebhookSign).
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_SIGNING_KEY = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
VECTOR_V1A = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="


def test_v1_on_the_published_vector() -> None:
    assert sign_v1(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_V1
    # the secret without its prefix is the same secret
    assert sign_v1(VECTOR_SECRET.removeprefix("whsec_"), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_V1


def test_v1a_on_the_published_vector() -> None:
    assert sign_v1a(VECTOR_SIGNING_KEY, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_V1A


def test_the_public_key_verifies_v1a_with_another_library() -> None:
    # OpenSSL's Ed25519 (the cryptography package), not libsodium's
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signing.public_key_of(VECTOR_SIGNING_KEY)[5:]))
    signature = base64.b64decode(VECTOR_V1A.split(",", 1)[1])
    public.verify(signature, b"%s.%d.%s" % (VECTOR_ID.encode(), VECTOR_TIMESTAMP, VECTOR_BODY))


def test_the_package_verifies_what_we_sign() -> None:
    secret = signing.new_secret()
    body = b'{"type":"permit.cancelled","timestamp":"2026-11-27T10:31:02.113Z","data":{"pn":"WP1","seq":7}}'
    headers = Signer([secret], signing.new_signing_key()).headers("msg_abc_7", int(time.time()), body)
    assert standardwebhooks.Webhook(secret).verify(body, headers)["data"]["seq"] == 7


def test_we_verify_what_the_package_signs() -> None:
    secret = signing.new_secret()
    stamp = dt.datetime.now(dt.timezone.utc)
    signature = standardwebhooks.Webhook(secret).sign("msg_x_1", stamp, b'{"a":1}')
    headers = {"webhook-id": "msg_x_1", "webhook-timestamp": str(int(stamp.timestamp())),
               "webhook-signature": signature}
    assert verify(b'{"a":1}', headers, secret=secret, now=time.time()) == ["v1"]


def test_during_a_rotation_both_secrets_sign() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    key = signing.new_signing_key()
    headers = Signer([new, old], key).headers("msg_r_1", int(time.time()), b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 3
    for secret in (old, new):  # a receiver on either secret accepts it
        standardwebhooks.Webhook(secret).verify(b"{}", headers)
    assert verify(b"{}", headers, secret=new, public_key=signing.public_key_of(key)) == ["v1", "v1a"]
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(signing.new_secret()).verify(b"{}", headers)


def test_a_tampered_body_or_stale_timestamp_fails() -> None:
    secret = signing.new_secret()
    key = signing.new_signing_key()
    stamp = int(time.time())
    headers = Signer([secret], key).headers("msg_t_1", stamp, b'{"a":1}')
    with pytest.raises(SignatureError):
        verify(b'{"a":2}', headers, secret=secret, public_key=signing.public_key_of(key))
    with pytest.raises(SignatureError, match="tolerance"):
        verify(b'{"a":1}', headers, secret=secret, now=stamp + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify(b'{"a":1}', {"webhook-id": "msg_t_1"}, secret=secret)


def test_secrets_are_random_and_of_the_spec_size() -> None:
    secrets = {signing.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32


def test_an_id_with_a_dot_is_never_signed() -> None:
    with pytest.raises(ValueError):
        sign_v1(VECTOR_SECRET, "msg.1", VECTOR_TIMESTAMP, b"{}")
