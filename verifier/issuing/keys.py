"""Issuer signing keys, key files, key rotation and the trust list they publish.

An issuer key is an Ed25519 key pair (PyNaCl) or, where the issuer chooses the
national algorithms, an SM2-with-SM3 key pair (WIRE-FORMAT 9; signing through
OpenSSL's libcrypto, :mod:`verifier.issuing.sm2`). The choice is per issuer: a key
directory (or the simulator's desk) names the algorithm of its keys, and a
rotation may move it from one to the other. The ``kid`` is the first 8 bytes of
SHA-256 over the public key's bytes (the 32-byte raw Ed25519 key, WIRE-FORMAT 2;
SM2's 65-byte uncompressed point, WIRE-FORMAT 9); a key may sign for a list of
issuers (``iss`` values such as ``CN-310000``) and has a status (WIRE-FORMAT 4):
``active`` signs, ``retired`` no longer signs but still verifies, ``revoked`` is
rejected with KEY_REVOKED.

Key file format (one file per key, permissions 0600): a JSON object that is a
private JWK, OKP (RFC 8037: ``kty``, ``crv``, ``x``, ``d``) or EC with ``crv``
"SM2" (``x``, ``y``, ``d`` the private scalar, ``distid`` when the user id is not
the default), with ``kid`` as unpadded base64url and the trust-list members
``iss`` and ``status``, plus ``format`` (``permit-verifier/issuer-key/1``) and
``created`` (epoch seconds). Being a JWK, it also loads in other tools.

A key directory (``verifier issuer keygen --out DIR``) holds ``keys/<kid>.json``
(the private keys; ``keys/`` is 0700) and ``trust-list.json`` (the public JWK Set,
rewritten after every change). The key files are the source of truth for the
statuses; the trust list is derived from them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, get_args

import nacl.signing
import orjson

from fastpath._sm2 import ALG_EDDSA, ALG_SM2_SM3, DEFAULT_USER_ID, JWK_ALG_SM2_SM3
from verifier.issuing.sm2 import Sm2SigningKey

__all__ = [
    "KEY_FILE_FORMAT",
    "TRUST_LIST_FILE",
    "DEFAULT_ISSUERS",
    "KeyStatus",
    "KeyAlg",
    "ALG_NAMES",
    "KeyFileError",
    "IssuerKey",
    "KeyRing",
    "b64url_encode",
    "b64url_decode",
    "kid_for",
    "trust_list",
    "write_trust_list",
    "save_key",
    "load_key",
    "write_file_atomic",
]

KeyStatus = Literal["active", "retired", "revoked"]
KEY_STATUSES: Final = frozenset(get_args(KeyStatus))
KeyAlg = Literal["EdDSA", "SM2-SM3"]
"""The signature algorithm of a key, by its JWK ``alg``: Ed25519, or SM2 with SM3."""
ALG_NAMES: Final = get_args(KeyAlg)
assert JWK_ALG_SM2_SM3 in ALG_NAMES
_COSE_ALGS: Final = {"EdDSA": ALG_EDDSA, "SM2-SM3": ALG_SM2_SM3}
KEY_FILE_FORMAT: Final = "permit-verifier/issuer-key/1"
TRUST_LIST_FILE: Final = "trust-list.json"
KEYS_SUBDIR: Final = "keys"
DEFAULT_ISSUERS: Final = ("CN-310000",)


class KeyFileError(ValueError):
    """A key file or key directory that cannot be used; the message says why."""


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2), as JWKs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url: no padding, no whitespace, canonical trailing bits."""
    if not isinstance(text, str) or "=" in text or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(raw) != text:  # other alphabets, non-zero trailing bits
        raise ValueError("not canonical unpadded base64url")
    return raw


def kid_for(public_key: bytes) -> bytes:
    """WIRE-FORMAT 2 and 9: kid = SHA-256(the public key's bytes)[:8]: the raw 32-byte
    Ed25519 key, or SM2's 65-byte point 0x04 || x || y."""
    return hashlib.sha256(public_key).digest()[:8]


def _check_issuers(issuers: Iterable[str]) -> tuple[str, ...]:
    if isinstance(issuers, str):  # a lone str would become a tuple of characters
        raise ValueError("issuers is a list of issuer names, not one string")
    result = tuple(issuers)
    if not result or not all(isinstance(i, str) and i for i in result):
        raise ValueError("a key signs for at least one issuer, each a non-empty string")
    return result


SigningKey = nacl.signing.SigningKey | Sm2SigningKey


def _b64url_member(data: Mapping[str, Any], name: str, length: int | None = None) -> bytes:
    try:
        raw = b64url_decode(data.get(name))  # type: ignore[arg-type]
    except ValueError as exc:
        raise KeyFileError(f"{name} is not unpadded base64url") from exc
    if length is not None and len(raw) != length:
        raise KeyFileError(f"{name} is not a {length}-byte value")
    return raw


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class IssuerKey:
    """An issuer signing key (Ed25519 or SM2) with the issuers it may sign for and its status."""

    signing_key: SigningKey
    issuers: tuple[str, ...] = DEFAULT_ISSUERS
    status: KeyStatus = "active"
    created: int = 0
    """When the key was made (epoch seconds); the newest active key signs."""

    def __post_init__(self) -> None:
        if not isinstance(self.signing_key, (nacl.signing.SigningKey, Sm2SigningKey)):
            raise TypeError("signing_key is a nacl.signing.SigningKey or a verifier.issuing.sm2.Sm2SigningKey")
        object.__setattr__(self, "issuers", _check_issuers(self.issuers))
        if self.status not in KEY_STATUSES:
            raise ValueError(f"status is one of {sorted(KEY_STATUSES)}, not {self.status!r}")

    @staticmethod
    def _new_signing_key(alg: str, seed: bytes | None, user_id: bytes | None) -> SigningKey:
        if alg == "EdDSA":
            if user_id is not None:
                raise ValueError("a user id (distid) is SM2's; an Ed25519 key has none")
            return nacl.signing.SigningKey.generate() if seed is None else nacl.signing.SigningKey(seed)
        if alg == JWK_ALG_SM2_SM3:
            user_id = DEFAULT_USER_ID if user_id is None else user_id
            return Sm2SigningKey.generate(user_id) if seed is None else Sm2SigningKey.from_seed(seed, user_id)
        raise ValueError(f"alg is one of {list(ALG_NAMES)}, not {alg!r}")

    @classmethod
    def generate(
        cls,
        issuers: Iterable[str] = DEFAULT_ISSUERS,
        *,
        status: KeyStatus = "active",
        created: int | None = None,
        alg: KeyAlg = "EdDSA",
        user_id: bytes | None = None,
    ) -> "IssuerKey":
        """A fresh random key of ``alg`` (SM2: with ``user_id``, by default 1234567812345678)."""
        return cls(
            cls._new_signing_key(alg, None, user_id),
            issuers,  # type: ignore[arg-type]  # __post_init__ checks and makes a tuple
            status,
            int(time.time()) if created is None else created,
        )

    @classmethod
    def from_seed(
        cls,
        seed: bytes,
        issuers: Iterable[str] = DEFAULT_ISSUERS,
        *,
        status: KeyStatus = "active",
        created: int = 0,
        alg: KeyAlg = "EdDSA",
        user_id: bytes | None = None,
    ) -> "IssuerKey":
        """The key for a 32-byte seed: the same seed gives the same key (simulator, tests)."""
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("a key seed is 32 bytes")
        return cls(cls._new_signing_key(alg, seed, user_id), issuers, status, created)  # type: ignore[arg-type]

    @property
    def alg(self) -> KeyAlg:
        """The JWK ``alg``: "EdDSA" or "SM2-SM3"."""
        return "EdDSA" if isinstance(self.signing_key, nacl.signing.SigningKey) else "SM2-SM3"

    @property
    def cose_alg(self) -> int:
        """The COSE ``alg`` of its signatures: -8, or -65537 for SM2 with SM3 (WIRE-FORMAT 9)."""
        return _COSE_ALGS[self.alg]

    @property
    def user_id(self) -> bytes | None:
        """SM2's user id (distid); None for an Ed25519 key."""
        return self.signing_key.user_id if isinstance(self.signing_key, Sm2SigningKey) else None

    @property
    def seed(self) -> bytes:
        """The 32 private bytes: Ed25519's seed, SM2's scalar d. Secret: never log or print them."""
        if isinstance(self.signing_key, Sm2SigningKey):
            return self.signing_key.private_scalar
        return bytes(self.signing_key)

    @property
    def public_key(self) -> bytes:
        """The public key's bytes: 32 raw Ed25519 bytes, or SM2's 65-byte point 0x04 || x || y."""
        if isinstance(self.signing_key, Sm2SigningKey):
            return self.signing_key.public_point
        return bytes(self.signing_key.verify_key)

    @property
    def kid(self) -> bytes:
        """The 8 raw bytes carried in the COSE header (WIRE-FORMAT 2)."""
        return kid_for(self.public_key)

    @property
    def kid_text(self) -> str:
        """The kid as the JWK carries it: unpadded base64url (WIRE-FORMAT 4)."""
        return b64url_encode(self.kid)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message`` (Ed25519, or SM2's r || s)."""
        if isinstance(self.signing_key, Sm2SigningKey):
            return self.signing_key.sign(message)
        return self.signing_key.sign(message).signature

    def with_status(self, status: KeyStatus) -> "IssuerKey":
        return dataclasses.replace(self, status=status)

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK of this key as the trust list carries it (WIRE-FORMAT 4 and 9)."""
        if isinstance(self.signing_key, Sm2SigningKey):
            point = self.public_key
            material: dict[str, Any] = {"kty": "EC", "crv": "SM2", "x": b64url_encode(point[1:33]),
                                        "y": b64url_encode(point[33:])}
            if self.signing_key.user_id != DEFAULT_USER_ID:
                material["distid"] = b64url_encode(self.signing_key.user_id)
        else:
            material = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(self.public_key)}
        return {
            **material,
            "kid": self.kid_text,
            "alg": self.alg,
            "use": "sig",
            "iss": list(self.issuers),
            "status": self.status,
        }

    def to_private_jwk(self) -> dict[str, Any]:
        """The key file's content: the public JWK plus ``d`` (the seed, or SM2's scalar). Secret."""
        return {
            "format": KEY_FILE_FORMAT,
            **self.to_jwk(),
            "d": b64url_encode(self.seed),
            "created": self.created,
        }

    @classmethod
    def from_private_jwk(cls, data: Mapping[str, Any]) -> "IssuerKey":
        """Parse a key file's content, checking that every member agrees with ``d``."""
        if not isinstance(data, Mapping):
            raise KeyFileError("a key file holds a JSON object")
        if data.get("format") != KEY_FILE_FORMAT:
            raise KeyFileError(f"format is not {KEY_FILE_FORMAT!r}")
        kind = (data.get("kty"), data.get("crv"))
        if kind not in (("OKP", "Ed25519"), ("EC", "SM2")):
            raise KeyFileError("not an Ed25519 OKP key nor an SM2 EC key (kty/crv)")
        d = _b64url_member(data, "d", 32)
        created = data.get("created", 0)
        if isinstance(created, bool) or not isinstance(created, int):
            raise KeyFileError("created is not an integer")
        issuers = data.get("iss")
        if not isinstance(issuers, list):
            raise KeyFileError("iss is not a list")
        try:
            if kind == ("EC", "SM2"):
                user_id = _b64url_member(data, "distid") if "distid" in data else DEFAULT_USER_ID
                signing_key: SigningKey = Sm2SigningKey(d, user_id)
            else:
                signing_key = nacl.signing.SigningKey(d)
            key = cls(signing_key, issuers, data.get("status"), created)  # type: ignore[arg-type]
        except ValueError as exc:
            raise KeyFileError(str(exc)) from exc
        # a file edited by hand must not pair one public key with another's private key
        public = key.to_jwk()
        for member in ("x", "y"):
            if member in public and data.get(member) != public[member]:
                raise KeyFileError(f"{member} does not match the private key d")
        if data.get("alg", key.alg) != key.alg:
            raise KeyFileError(f"alg is not {key.alg!r}, the algorithm of a {kind[0]} {kind[1]} key")
        if data.get("kid") != key.kid_text:
            raise KeyFileError("kid does not match the public key")
        return key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IssuerKey):
            return NotImplemented
        return (self.alg, self.seed, self.user_id, self.issuers, self.status, self.created) == (
            other.alg, other.seed, other.user_id, other.issuers, other.status, other.created,
        )

    def __hash__(self) -> int:
        return hash((self.kid, self.issuers, self.status))

    def __repr__(self) -> str:  # never the private key
        return (
            f"IssuerKey(alg={self.alg!r}, kid={self.kid_text!r}, issuers={list(self.issuers)!r}, "
            f"status={self.status!r}, created={self.created})"
        )


def trust_list(keys: Iterable[IssuerKey]) -> dict[str, Any]:
    """The JWK Set of WIRE-FORMAT 4 for ``keys`` (public parts only)."""
    jwks = [key.to_jwk() for key in keys]
    kids = [jwk["kid"] for jwk in jwks]
    if len(set(kids)) != len(kids):
        raise ValueError("a key appears twice in the trust list")
    if not jwks:
        raise ValueError("a trust list holds at least one key")
    return {"keys": jwks}


def write_file_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write atomically: a temporary file made with ``mode`` (not the umask's), then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_trust_list(path: str | os.PathLike[str], keys: Iterable[IssuerKey]) -> dict[str, Any]:
    """Write the JWK Set for ``keys`` to ``path`` (public, 0644); return it."""
    jwks = trust_list(keys)
    write_file_atomic(Path(path), orjson.dumps(jwks, option=orjson.OPT_INDENT_2) + b"\n", 0o644)
    return jwks


def save_key(path: str | os.PathLike[str], key: IssuerKey) -> Path:
    """Write ``key`` as a key file with permissions 0600."""
    path = Path(path)
    write_file_atomic(path, orjson.dumps(key.to_private_jwk(), option=orjson.OPT_INDENT_2) + b"\n")
    return path


def load_key(path: str | os.PathLike[str]) -> IssuerKey:
    """Read a key file. Raises KeyFileError (or OSError when unreadable)."""
    raw = Path(path).read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not JSON") from exc
    try:
        return IssuerKey.from_private_jwk(data)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc


class KeyRing:
    """The issuer's keys with their statuses: rotation, revocation, the trust list.

    In memory (the upstream simulator) or backed by a key directory (the CLI).
    Keys are kept in the order they were added; the newest active key signs.
    """

    def __init__(self, keys: Iterable[IssuerKey] = ()) -> None:
        self._keys: dict[bytes, IssuerKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: IssuerKey) -> IssuerKey:
        if key.kid in self._keys:
            raise ValueError(f"key {key.kid_text} is already in the ring")
        self._keys[key.kid] = key
        return key

    @property
    def keys(self) -> tuple[IssuerKey, ...]:
        return tuple(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[IssuerKey]:
        return iter(self.keys)

    def get(self, kid: bytes | str) -> IssuerKey:
        """The key for a raw 8-byte kid or its base64url text; KeyError when absent."""
        raw = kid if isinstance(kid, bytes) else b64url_decode(kid)
        return self._keys[raw]

    @property
    def active(self) -> IssuerKey:
        """The key that signs now: the newest active one."""
        for key in reversed(self._keys.values()):
            if key.status == "active":
                return key
        raise LookupError("no active key: rotate to make one")

    def set_status(self, kid: bytes | str, status: KeyStatus) -> IssuerKey:
        current = self.get(kid)
        if current.status == "revoked" and status != "revoked":
            # a compromised key stays compromised: what it signed must never verify again
            raise ValueError(f"key {current.kid_text} is revoked; revocation is final")
        key = current.with_status(status)
        self._keys[key.kid] = key
        return key

    def rotate(
        self,
        issuers: Sequence[str] | None = None,
        *,
        seed: bytes | None = None,
        created: int | None = None,
        alg: KeyAlg | None = None,
        user_id: bytes | None = None,
    ) -> IssuerKey:
        """A new active key; every previously active key becomes retired.

        The new key signs for ``issuers``, by default the union (in order) of the
        active keys' issuers; with no active key, those of the newest key (after
        a revocation); DEFAULT_ISSUERS for an empty ring. Its algorithm is ``alg``,
        by default the newest key's (Ed25519 for an empty ring): the issuer's
        choice stays until a rotation changes it; an SM2 key keeps the newest SM2
        key's user id unless ``user_id`` is given. A ``seed`` makes the new key
        deterministic.
        """
        previous = [k for k in self._keys.values() if k.status == "active"]
        newest = list(self._keys.values())[-1:]
        if issuers is None:
            issuers = list(dict.fromkeys(i for k in previous for i in k.issuers))
            if not issuers:
                issuers = list(newest[0].issuers) if newest else list(DEFAULT_ISSUERS)
        if alg is None:
            alg = newest[0].alg if newest else "EdDSA"
        if user_id is None and alg == "SM2-SM3" and newest and newest[0].alg == alg:
            user_id = newest[0].user_id
        now = int(time.time()) if created is None else created
        if seed is None:
            new = IssuerKey.generate(issuers, created=now, alg=alg, user_id=user_id)
        else:
            new = IssuerKey.from_seed(seed, issuers, created=now, alg=alg, user_id=user_id)
        self.add(new)
        for key in previous:
            self.set_status(key.kid, "retired")
        return new

    def retire(self, kid: bytes | str) -> IssuerKey:
        return self.set_status(kid, "retired")

    def revoke(self, kid: bytes | str) -> IssuerKey:
        """Mark a key compromised: everything it signed verifies as KEY_REVOKED."""
        return self.set_status(kid, "revoked")

    def trust_list(self) -> dict[str, Any]:
        return trust_list(self._keys.values())

    # --- a key directory ----------------------------------------------------

    @staticmethod
    def key_path(directory: str | os.PathLike[str], key: IssuerKey) -> Path:
        return Path(directory) / KEYS_SUBDIR / f"{key.kid_text}.json"

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "KeyRing":
        """Read every key file of a key directory (oldest first)."""
        keys_dir = Path(directory) / KEYS_SUBDIR
        if not keys_dir.is_dir():
            raise KeyFileError(f"{directory}: not a key directory (no {KEYS_SUBDIR}/ folder)")
        keys = [load_key(p) for p in sorted(keys_dir.glob("*.json"))]
        if not keys:
            raise KeyFileError(f"{directory}: no key files in {KEYS_SUBDIR}/")
        for key, path in zip(keys, sorted(keys_dir.glob("*.json"))):
            if path.name != f"{key.kid_text}.json":
                raise KeyFileError(f"{path}: file name does not match kid {key.kid_text}")
        keys.sort(key=lambda k: k.created)  # stable: ties keep the file order
        return cls(keys)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write every key file and the trust list; return the trust list's path."""
        directory = Path(directory)
        keys_dir = directory / KEYS_SUBDIR
        keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)
        for key in self._keys.values():
            save_key(self.key_path(directory, key), key)
        path = directory / TRUST_LIST_FILE
        write_trust_list(path, self._keys.values())
        return path
