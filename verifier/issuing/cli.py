"""Sub-commands of the issuing side: ``issuer``, ``mint``, ``card`` and ``verify-qr``.

    verifier issuer keygen --out DIR [--issuer CN-310000 ...] [--alg EdDSA|SM2-SM3] [--distid TEXT]
    verifier issuer rotate --dir DIR [--issuer ...] [--alg EdDSA|SM2-SM3] [--distid TEXT]
    verifier issuer revoke --dir DIR --kid KID
    verifier mint wp1|es1 --key KEYFILE_OR_DIR --permit JSON_OR_@FILE [--iat EPOCH] [--exp EPOCH]
    verifier mint card --key KEYFILE_OR_DIR --card JSON_OR_@FILE --out DIR
    verifier card sign --card-key FILE --challenge BASE64    # {"signature": base64}
    verifier card read --card-dir DIR [--challenge BASE64]
    verifier verify-qr --trust-list FILE [--at EPOCH] TEXT|-

Output is JSON (one object per command) on stdout; private keys are written to
files (0600) and never printed. Exit codes (verifier/cli.py): 0 success or VALID,
1 a verdict other than VALID, 2 a usage error (bad arguments, unreadable or
invalid files), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
import time
from pathlib import Path
from typing import Any

import orjson

EXIT_OK = 0
EXIT_NOT_VALID = 1
EXIT_USAGE = 2

CARD_CERTIFICATE_FILE = "card-certificate.cbor"
CARD_KEY_FILE = "card-key.json"
# a card certificate outlives the codes: five years unless --exp says otherwise
DEFAULT_CARD_VALIDITY_S = 5 * 365 * 86400


class UsageError(Exception):
    """Bad arguments or files: reported on stderr, exit code 2."""


def register(subparsers: Any) -> None:
    _register_issuer(subparsers)
    _register_mint(subparsers)
    _register_card(subparsers)
    _register_verify_qr(subparsers)


# --- plumbing ------------------------------------------------------------------


def _run(handler: Any) -> Any:
    """Wrap a handler so that a usage error is a message and exit code 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"verifier {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _json_default(value: Any) -> str:
    if isinstance(value, bytes):  # nothing printed today is bytes; never crash if one is
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
    raise TypeError(f"not JSON: {type(value).__name__}")


def _print(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, default=_json_default) + b"\n")
    sys.stdout.flush()


def _read_json_argument(value: str, what: str) -> Any:
    """JSON text, or ``@FILE`` (``@-`` for stdin)."""
    if value.startswith("@"):
        name = value[1:]
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {what} from {name}: {exc.strerror}") from exc
    else:
        raw = value.encode("utf-8")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc


def _epoch(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer epoch second: {value!r}") from None


def _load_signing_key(path: str) -> Any:
    """A key file, or a key directory (its newest active key)."""
    from verifier.issuing.keys import KeyFileError, KeyRing, load_key

    try:
        if Path(path).is_dir():
            return KeyRing.load(path).active
        return load_key(path)
    except (KeyFileError, LookupError) as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot read key {path}: {exc.strerror}") from exc


def _b64_or_hex(value: str, what: str) -> bytes:
    """Standard or url-safe base64 (padding optional), or hex."""
    text = value.strip()
    try:
        # 64 hex digits are 32 bytes; base64 of 32 bytes is 43 or 44 characters
        if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        padded = text + "=" * (-len(text) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"{what} is neither base64 nor hex") from exc


# --- verifier issuer ...  ----------------------------------------------------------


def _register_issuer(subparsers: Any) -> None:
    issuer = subparsers.add_parser(
        "issuer",
        help="issuer signing keys and the trust list",
        description="Manage an issuer key directory: DIR/keys/<kid>.json (private, 0600) "
        "and DIR/trust-list.json (the public JWK Set, WIRE-FORMAT 4).",
    )
    commands = issuer.add_subparsers(dest="issuer_command", metavar="ACTION", required=True)

    keygen = commands.add_parser("keygen", help="make a key directory with a new active key")
    keygen.add_argument("--out", required=True, metavar="DIR", help="directory to create (or an empty one)")
    keygen.add_argument(
        "--issuer", action="append", metavar="ISS", dest="issuers",
        help="an issuer the key may sign for, e.g. CN-310000 (repeatable; default CN-310000)",
    )
    _add_alg_arguments(keygen, "EdDSA (Ed25519, the default) or SM2-SM3 (SM2 with SM3, WIRE-FORMAT 9)")
    keygen.set_defaults(func=_run(_cmd_keygen))

    rotate = commands.add_parser("rotate", help="add a new active key; the active ones become retired")
    rotate.add_argument("--dir", required=True, metavar="DIR", help="the key directory")
    rotate.add_argument(
        "--issuer", action="append", metavar="ISS", dest="issuers",
        help="issuers of the new key (repeatable; default: those of the active key)",
    )
    _add_alg_arguments(rotate, "the new key's algorithm, EdDSA or SM2-SM3 (default: the newest key's)")
    rotate.set_defaults(func=_run(_cmd_rotate))

    revoke = commands.add_parser("revoke", help="mark a key revoked: all it signed becomes KEY_REVOKED")
    revoke.add_argument("--dir", required=True, metavar="DIR", help="the key directory")
    revoke.add_argument("--kid", required=True, help="the key's kid (unpadded base64url, as in the trust list; write --kid=KID when it starts with -)")
    revoke.set_defaults(func=_run(_cmd_revoke))


def _add_alg_arguments(parser: argparse.ArgumentParser, alg_help: str) -> None:
    from verifier.issuing.keys import ALG_NAMES

    parser.add_argument("--alg", choices=ALG_NAMES, default=None, help=alg_help)
    parser.add_argument(
        "--distid", metavar="TEXT", default=None,
        help="SM2 only: the user id the key signs with, as UTF-8 text (default 1234567812345678; "
        "a rotation keeps the newest SM2 key's)",
    )


def _alg_options(args: argparse.Namespace) -> dict[str, Any]:
    """The --alg and --distid of keygen and rotate, checked together."""
    user_id = None if args.distid is None else args.distid.encode("utf-8")
    if user_id is not None and args.alg not in (None, "SM2-SM3"):
        raise UsageError("--distid is the user id of an SM2 key: it needs --alg SM2-SM3")
    return {"alg": args.alg, "user_id": user_id}


def _rotated(ring: Any, issuers: Any, args: argparse.Namespace) -> Any:
    """The ring's new active key, or a usage error (bad issuers, alg, distid, or no SM2 here)."""
    from verifier.issuing.sm2 import Sm2Unavailable

    try:
        return ring.rotate(issuers, **_alg_options(args))
    except (ValueError, Sm2Unavailable) as exc:
        raise UsageError(str(exc)) from exc


def _key_summary(ring: Any, directory: Path, key: Any) -> dict[str, Any]:
    return {
        "kid": key.kid_text,
        "alg": key.alg,
        "status": key.status,
        "issuers": list(key.issuers),
        "key_file": str(ring.key_path(directory, key)),
    }


def _load_ring(directory: str) -> Any:
    from verifier.issuing.keys import KeyFileError, KeyRing

    try:
        return KeyRing.load(directory)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {directory}: {exc.strerror}") from exc


def _save_ring(ring: Any, directory: Path) -> Path:
    try:
        return ring.save(directory)
    except OSError as exc:
        raise UsageError(f"cannot write {directory}: {exc.strerror}") from exc


def _cmd_keygen(args: argparse.Namespace) -> int:
    from verifier.issuing.keys import DEFAULT_ISSUERS, KEYS_SUBDIR, TRUST_LIST_FILE, KeyRing

    directory = Path(args.out)
    if (directory / KEYS_SUBDIR).exists() or (directory / TRUST_LIST_FILE).exists():
        raise UsageError(f"{directory} already holds issuer keys; use 'verifier issuer rotate --dir {directory}'")
    ring = KeyRing()
    key = _rotated(ring, args.issuers or list(DEFAULT_ISSUERS), args)  # before anything is written
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory}: {exc.strerror}") from exc
    trust_list_path = _save_ring(ring, directory)
    _print({"trust_list": str(trust_list_path), **_key_summary(ring, directory, key)})
    return EXIT_OK


def _cmd_rotate(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    ring = _load_ring(args.dir)
    key = _rotated(ring, args.issuers, args)
    trust_list_path = _save_ring(ring, directory)
    _print({
        "trust_list": str(trust_list_path),
        **_key_summary(ring, directory, key),
        "keys": [{"kid": k.kid_text, "alg": k.alg, "status": k.status} for k in ring.keys],
    })
    return EXIT_OK


def _cmd_revoke(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    ring = _load_ring(args.dir)
    try:
        key = ring.revoke(args.kid)
    except (KeyError, ValueError):
        raise UsageError(f"no key with kid {args.kid!r} in {directory}") from None
    trust_list_path = _save_ring(ring, directory)
    if not any(k.status == "active" for k in ring.keys):
        print("verifier issuer: no active key remains; run 'verifier issuer rotate'", file=sys.stderr)
    _print({
        "trust_list": str(trust_list_path),
        **_key_summary(ring, directory, key),
        "keys": [{"kid": k.kid_text, "alg": k.alg, "status": k.status} for k in ring.keys],
    })
    return EXIT_OK


# --- verifier mint ... -----------------------------------------------------------


def _register_mint(subparsers: Any) -> None:
    mint = subparsers.add_parser(
        "mint",
        help="mint WP1/ES1 codes and card certificates (tests, demos)",
        description="Mint signed codes and card certificates with an issuer key "
        "(a key file, or a key directory for its active key).",
    )
    commands = mint.add_subparsers(dest="mint_command", metavar="KIND", required=True)
    for kind, text in (
        ("wp1", "a WP1 code (work-permit notice); exp defaults to the end of the permit's vt day, UTC+8"),
        ("es1", "an ES1 code (e-card dynamic code); exp defaults to iat + 60"),
    ):
        sub = commands.add_parser(kind, help=text, description=text)
        sub.add_argument("--key", required=True, metavar="KEYFILE", help="issuer key file or key directory")
        sub.add_argument(
            "--permit", required=True, metavar="JSON",
            help="the permit as a JSON object (pn, n, nat, dob, cat, emp, vf, vt, v, ssn, cn), or @FILE",
        )
        sub.add_argument("--iat", type=_epoch, metavar="EPOCH", help="issued at (default: now)")
        sub.add_argument("--exp", type=_epoch, metavar="EPOCH", help="expiry")
        sub.add_argument("--nbf", type=_epoch, metavar="EPOCH", help="not before (optional claim)")
        sub.add_argument("--iss", help="issuer claim (default: the key's first issuer)")
        _status_flag(sub, "permits")
        sub.set_defaults(func=_run(_cmd_mint_code), profile=kind.upper())

    card = commands.add_parser(
        "card", help="a card certificate and a software card key (demos)",
        description=f"Write DIR/{CARD_CERTIFICATE_FILE} (raw COSE_Sign1) and DIR/{CARD_KEY_FILE} "
        "(the software card's private key, 0600); print the certificate in base64.",
    )
    card.add_argument("--key", required=True, metavar="KEYFILE", help="issuer key file or key directory")
    card.add_argument("--card", required=True, metavar="JSON", help='{"cn": ..., "ssn": ..., "pn": ...} or @FILE')
    card.add_argument("--out", required=True, metavar="DIR", help="where to write the certificate and card key")
    card.add_argument("--iat", type=_epoch, metavar="EPOCH", help="issued at (default: now)")
    card.add_argument("--exp", type=_epoch, metavar="EPOCH", help="card expiry (default: iat + 5 years)")
    card.add_argument("--iss", help="issuer claim (default: the key's first issuer)")
    _status_flag(card, "cards")
    card.set_defaults(func=_run(_cmd_mint_card))


def _status_flag(parser: argparse.ArgumentParser, list_name: str) -> None:
    parser.add_argument("--status", nargs=2, metavar=("URI", "IDX"),
                        help=f"the status claim (WIRE-FORMAT 8): entry IDX of the {list_name} Status List at URI")


def _status(args: argparse.Namespace) -> tuple[str, int] | None:
    if args.status is None:
        return None
    uri, idx = args.status
    try:
        return uri, int(idx)
    except ValueError:
        raise UsageError(f"--status IDX is an unsigned integer, not {idx!r}") from None


def _permit_from_json(data: Any) -> Any:
    import msgspec

    from verifier.index.records import PermitRecord

    if isinstance(data, list):  # a PermitRecord as msgspec encodes it (array_like)
        try:
            return msgspec.convert(data, PermitRecord)
        except msgspec.ValidationError as exc:
            raise UsageError(f"permit is not a permit record: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError("permit is a JSON object")
    return data


def _cmd_mint_code(args: argparse.Namespace) -> int:
    from verifier.issuing.mint import MintError, mint_es1, mint_wp1

    key = _load_signing_key(args.key)
    permit = _permit_from_json(_read_json_argument(args.permit, "permit"))
    iat = int(time.time()) if args.iat is None else args.iat
    try:
        if args.profile == "WP1":
            code = mint_wp1(key, permit, iat=iat, exp=args.exp, nbf=args.nbf, iss=args.iss, status=_status(args))
        else:
            lifetime = 60 if args.exp is None else args.exp - iat
            code = mint_es1(key, permit, iat=iat, lifetime=lifetime, nbf=args.nbf, iss=args.iss,
                            status=_status(args))
    except MintError as exc:
        raise UsageError(str(exc)) from exc
    except KeyError as exc:  # a required permit field is absent
        raise UsageError(f"permit has no {exc.args[0]!r}") from exc
    print(code)
    return EXIT_OK


def _cmd_mint_card(args: argparse.Namespace) -> int:
    from verifier.issuing.card import SoftwareCard
    from verifier.issuing.mint import MintError, mint_card_certificate

    key = _load_signing_key(args.key)
    card_data = _read_json_argument(args.card, "card")
    if not isinstance(card_data, dict):
        raise UsageError("card is a JSON object with cn, ssn and pn")
    iat = int(time.time()) if args.iat is None else args.iat
    exp = iat + DEFAULT_CARD_VALIDITY_S if args.exp is None else args.exp
    card = SoftwareCard.generate()
    try:
        certificate = mint_card_certificate(key, card_data, card.public_key, iat=iat, exp=exp, iss=args.iss,
                                            status=_status(args))
    except MintError as exc:
        raise UsageError(str(exc)) from exc
    directory = Path(args.out)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        certificate_path = directory / CARD_CERTIFICATE_FILE
        certificate_path.write_bytes(certificate)
        card_key_path = card.save(directory / CARD_KEY_FILE)
    except OSError as exc:
        raise UsageError(f"cannot write to {directory}: {exc.strerror}") from exc
    _print({
        "certificate": base64.b64encode(certificate).decode("ascii"),
        "certificate_file": str(certificate_path),
        "card_key_file": str(card_key_path),
        "card_public_key": base64.b64encode(card.public_key).decode("ascii"),
        "kid": key.kid_text,
        "iat": iat,
        "exp": exp,
    })
    return EXIT_OK


# --- verifier card sign -------------------------------------------------------------


def _register_card(subparsers: Any) -> None:
    card = subparsers.add_parser(
        "card", help="a software card (demos)",
        description="Act as a card's chip: answer a challenge with the card key of 'verifier mint card'.",
    )
    commands = card.add_subparsers(dest="card_command", metavar="ACTION", required=True)
    sign = commands.add_parser(
        "sign", help='sign b"SSC-AUTH-1" + challenge; prints {"signature": base64} (JSON)',
        description='Sign b"SSC-AUTH-1" + the challenge with the card key, as the chip does; print one JSON '
        'object, {"signature": "<base64 of the 64-byte signature>"} (the field of POST /v1/verify/card).',
    )
    sign.add_argument("--card-key", required=True, metavar="FILE", help=f"the {CARD_KEY_FILE} of 'verifier mint card'")
    sign.add_argument("--challenge", required=True, help="the 32-byte challenge, base64 or hex")
    sign.set_defaults(func=_run(_cmd_card_sign))
    read = commands.add_parser(
        "read", help="a card read file: the certificate, a fresh challenge and the card's signature of it",
        description="Act as a terminal reading the card of 'verifier mint card --out DIR': print "
        '{"certificate", "challenge", "signature"} (base64), what POST /v1/verify/card takes and '
        "'verifier offline verify' reads.",
    )
    read.add_argument("--card-dir", required=True, metavar="DIR",
                      help=f"the directory of 'verifier mint card' ({CARD_CERTIFICATE_FILE}, {CARD_KEY_FILE})")
    read.add_argument("--challenge", help="the 32-byte challenge, base64 or hex (default: a fresh random one)")
    read.set_defaults(func=_run(_cmd_card_read))


def _cmd_card_sign(args: argparse.Namespace) -> int:
    from verifier.issuing.card import CHALLENGE_LENGTH, SoftwareCard
    from verifier.issuing.keys import KeyFileError

    try:
        card = SoftwareCard.load(args.card_key)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {args.card_key}: {exc.strerror}") from exc
    challenge = _b64_or_hex(args.challenge, "challenge")
    if len(challenge) != CHALLENGE_LENGTH:
        raise UsageError(f"a challenge is {CHALLENGE_LENGTH} bytes, not {len(challenge)}")
    _print({"signature": base64.b64encode(card.sign_challenge(challenge)).decode("ascii")})
    return EXIT_OK


def _cmd_card_read(args: argparse.Namespace) -> int:
    import os

    from verifier.issuing.card import CHALLENGE_LENGTH, SoftwareCard
    from verifier.issuing.keys import KeyFileError

    directory = Path(args.card_dir)
    try:
        card = SoftwareCard.load(directory / CARD_KEY_FILE)
        certificate = (directory / CARD_CERTIFICATE_FILE).read_bytes()
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot read the card in {directory}: {exc.strerror}") from exc
    challenge = _b64_or_hex(args.challenge, "challenge") if args.challenge else os.urandom(CHALLENGE_LENGTH)
    if len(challenge) != CHALLENGE_LENGTH:
        raise UsageError(f"a challenge is {CHALLENGE_LENGTH} bytes, not {len(challenge)}")
    encode = base64.b64encode
    _print({"certificate": encode(certificate).decode("ascii"), "challenge": encode(challenge).decode("ascii"),
            "signature": encode(card.sign_challenge(challenge)).decode("ascii")})
    return EXIT_OK


# --- verifier verify-qr ---------------------------------------------------------------


def _register_verify_qr(subparsers: Any) -> None:
    verify = subparsers.add_parser(
        "verify-qr",
        help="verify a QR text offline against a trust list (no status check)",
        description="Verify a WP1/ES1 QR text (WIRE-FORMAT 1-4) against a trust list file and print "
        "the verdict as JSON. Exit 0 for VALID, 1 for any other verdict, 2 for a usage error. "
        "Offline: the permit's status (cancelled, superseded, ...) needs the service.",
    )
    verify.add_argument("--trust-list", required=True, metavar="FILE", help="JWK Set (WIRE-FORMAT 4)")
    verify.add_argument("--at", type=_epoch, metavar="EPOCH", help="verify as of this time (default: now)")
    verify.add_argument("text", metavar="TEXT", help="the QR text, or - to read it from stdin")
    verify.set_defaults(func=_run(_cmd_verify_qr))


def _cmd_verify_qr(args: argparse.Namespace) -> int:
    import fastpath

    try:
        raw = Path(args.trust_list).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read trust list {args.trust_list}: {exc.strerror}") from exc
    try:
        trust = fastpath.TrustList.from_jwks(raw)
    except fastpath.TrustListError as exc:
        raise UsageError(f"invalid trust list {args.trust_list}: {exc}") from exc
    if args.text == "-":
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("stdin is not UTF-8 text") from None
        # only the line ending: a space is a base45 character (RFC 9285)
        text = text.rstrip("\r\n")
    else:
        text = args.text
    verdict = fastpath.verify_qr(text, trust, args.at, cache=False)
    _print({
        "result": verdict.result,
        "reasons": list(verdict.reasons),
        "profile": verdict.profile,
        "permit": verdict.permit,
    })
    return EXIT_OK if verdict.ok else EXIT_NOT_VALID
