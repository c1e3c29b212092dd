"""The software card: deterministic keys, challenge signing, its key file."""

from __future__ import annotations

import stat
from pathlib import Path

import nacl.exceptions
import nacl.signing
import orjson
import pytest

from verifier.issuing import KeyFileError, SoftwareCard
from verifier.issuing.card import CARD_AUTH_DOMAIN
from verifier.issuing.keys import b64url_encode

MASTER = b"simulator master seed, 32 bytes"


def test_derive_is_deterministic_per_card_number() -> None:
    card = SoftwareCard.derive(MASTER, "S31000012345678")
    assert card.public_key == SoftwareCard.derive(MASTER, "S31000012345678").public_key
    assert card.public_key != SoftwareCard.derive(MASTER, "S31000012345679").public_key
    assert card.public_key != SoftwareCard.derive(MASTER + b"!", "S31000012345678").public_key


@pytest.mark.parametrize(("master", "cn"), [(b"short", "S1"), (MASTER, ""), ("text", "S1")])
def test_derive_refuses_weak_or_missing_inputs(master: object, cn: str) -> None:
    with pytest.raises(ValueError):
        SoftwareCard.derive(master, cn)  # type: ignore[arg-type]


def test_sign_challenge_signs_the_domain_tag_and_the_challenge() -> None:
    card = SoftwareCard.from_seed(b"\x11" * 32)
    challenge = bytes(range(32))
    signature = card.sign_challenge(challenge)
    assert len(signature) == 64
    verify_key = nacl.signing.VerifyKey(card.public_key)
    verify_key.verify(b"SSC-AUTH-1" + challenge, signature)
    assert CARD_AUTH_DOMAIN == b"SSC-AUTH-1"
    with pytest.raises(nacl.exceptions.BadSignatureError):
        verify_key.verify(challenge, signature)  # without the domain tag it does not verify


@pytest.mark.parametrize("challenge", [b"", b"\x00" * 31, b"\x00" * 33])
def test_sign_challenge_refuses_other_lengths(challenge: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SoftwareCard.generate().sign_challenge(challenge)


def test_sign_challenge_refuses_text() -> None:
    with pytest.raises(TypeError):
        SoftwareCard.generate().sign_challenge("0" * 32)  # type: ignore[arg-type]


def test_card_key_file_round_trip(tmp_path: Path) -> None:
    card = SoftwareCard.generate()
    path = card.save(tmp_path / "card-key.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SoftwareCard.load(path).public_key == card.public_key
    data = orjson.loads(path.read_bytes())
    data["x"] = b64url_encode(SoftwareCard.generate().public_key)
    path.write_bytes(orjson.dumps(data))
    with pytest.raises(KeyFileError, match="x does not match"):
        SoftwareCard.load(path)


def test_repr_never_shows_the_seed() -> None:
    card = SoftwareCard.from_seed(b"\x22" * 32)
    assert b64url_encode(card.seed) not in repr(card)
    assert b64url_encode(card.public_key) in repr(card)
