"""``verifier offline fetch`` and ``verifier offline verify``.

    verifier offline fetch --from URL --dir DIR [--json]
    verifier offline verify --dir DIR [--json] [--at EPOCH] [CODE | FILE | -]

``fetch`` downloads the service's trust list, Status Lists and receipt keys, checks them
(:mod:`verifier.offline.fetch`) and replaces DIR/offline-bundle.json atomically. Exit 0
written, 1 nothing written (refused, older than the bundle held, service unreachable),
2 a usage error.

``verify`` checks a QR text or a card read file with the bundle alone: no network, no
Redis. The input is the argument (the QR text, or the path of a file holding one or a
card read), or stdin (``-``, the default). A card read file is JSON
``{"certificate", "challenge", "signature"}`` in base64, as ``POST /v1/verify/card``
takes it (``verifier card read`` makes one); its challenge is the terminal's own, so
its freshness is the terminal's to vouch for. The verdict is printed as text, or with
``--json`` in the API's verdict shape; both say how old the status is. Exit 0 only
for VALID, 1 for any other verdict, 2 for a usage error (no bundle, unreadable input).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import orjson

EXIT_OK = 0
EXIT_NOT_VALID = 1
EXIT_USAGE = 2
MAX_INPUT_BYTES = 1 << 20
"""A QR text or a card read file, at most (both are a few kilobytes)."""


class UsageError(Exception):
    """Bad arguments or files: reported on stderr, exit code 2."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "offline",
        help="verify without a network: fetch a bundle (trust list + Status Lists), then verify with it",
        description="Offline verification (WIRE-FORMAT 8): 'fetch' while online, 'verify' with no network.",
    )
    commands = parser.add_subparsers(dest="offline_command", metavar="COMMAND", required=True)

    fetch = commands.add_parser("fetch", help="download and check a bundle; replace DIR's atomically")
    fetch.add_argument("--from", dest="source", required=True, metavar="URL",
                       help="the service's base URL, e.g. https://verifier.example")
    fetch.add_argument("--dir", required=True, metavar="DIR", help="where the bundle is kept")
    fetch.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    fetch.add_argument("--json", action="store_true", help="print the summary as JSON")
    fetch.set_defaults(func=_run(_cmd_fetch))

    verify = commands.add_parser("verify", help="verify a QR code or a card read file with the bundle alone")
    verify.add_argument("--dir", required=True, metavar="DIR", help="the bundle's directory")
    verify.add_argument("--json", action="store_true", help="print the verdict in the API's shape")
    verify.add_argument("--at", type=_epoch, metavar="EPOCH", help="verify as of this time (default: now)")
    verify.add_argument("input", nargs="?", default="-", metavar="CODE | FILE | -",
                        help="the QR text, a file with it or with a card read, or - for stdin (default)")
    verify.set_defaults(func=_run(_cmd_verify))


def _epoch(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer epoch second: {value!r}") from None


def _run(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except UsageError as exc:
            print(f"verifier offline {args.offline_command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data) + b"\n")
    sys.stdout.flush()


# --- fetch ---------------------------------------------------------------------------


def _cmd_fetch(args: argparse.Namespace) -> int:
    from fastpath import StatusList
    from verifier.offline.fetch import FetchError, fetch_bundle, replace_bundle

    if not args.source.startswith(("http://", "https://")):
        raise UsageError(f"--from is an http:// or https:// URL, not {args.source!r}")
    directory = Path(args.dir)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    try:
        bundle = fetch_bundle(args.source, timeout_s=args.timeout)
        path, replaced = replace_bundle(bundle, directory)
    except FetchError as exc:
        print(f"verifier offline fetch: nothing written: {exc}", file=sys.stderr)
        return EXIT_NOT_VALID
    except OSError as exc:
        raise UsageError(f"cannot write the bundle into {directory}: {exc.strerror or exc}") from None
    lists = {name: held for name, held in bundle.lists.items() if isinstance(held, StatusList)}
    summary = {
        "bundle": str(path), "source": bundle.source, "fetched_at": bundle.fetched_at,
        "trust_list": {"version": bundle.trust.version, "issuer_keys": len(bundle.trust.issuer_keys),
                       "status_keys": len(bundle.trust.status_keys)},
        "status_lists": {name: {"entries": len(held), "iat": held.iat, "exp": held.exp, "ttl": held.ttl,
                                "sub": held.sub} for name, held in sorted(lists.items())},
        "receipt_keys": len((bundle.receipt_keys or {}).get("keys", [])),
        "replaced": replaced is not None,
    }
    if args.json:
        _write(summary)
        return EXIT_OK
    print(f"bundle written: {path}")
    print(f"  trust list {bundle.trust.version}: {summary['trust_list']['issuer_keys']} issuer keys, "
          f"{summary['trust_list']['status_keys']} Status List signers")
    for name, held in sorted(lists.items()):
        print(f"  {name}: {len(held)} entries, status as of {_utc(held.iat)}, usable until {_utc(held.exp)}, "
              f"fetch again within {held.ttl} s")
    print(f"  receipt keys: {summary['receipt_keys']}")
    return EXIT_OK


# --- verify --------------------------------------------------------------------------


def _read_input(value: str) -> bytes:
    if value == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        path = Path(value)
        try:
            is_file = path.is_file()
        except (OSError, ValueError):  # a name too long for the system: it is a code
            is_file = False
        if not is_file:
            return value.encode("utf-8", errors="surrogateescape")  # the code itself
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"the input is over {MAX_INPUT_BYTES} bytes: no QR code or card read is")
    return data


def _decode_b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise UsageError(f"the card read's {what} is not base64 text")
    text = value.strip()
    try:
        padded = text + "=" * (-len(text) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"the card read's {what} is not base64") from None


def _card_read(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(certificate, challenge, signature) when ``data`` is a card read file; None when it is
    not JSON (then it is a QR text); UsageError when it is JSON but no card read."""
    stripped = data.lstrip()
    if not stripped.startswith(b"{"):
        return None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UsageError("the input starts like JSON but is not JSON: not a card read file") from None
    if not isinstance(document, dict) or not {"certificate", "challenge", "signature"} <= document.keys():
        raise UsageError('a card read file is {"certificate", "challenge", "signature"} in base64')
    return (_decode_b64(document["certificate"], "certificate"), _decode_b64(document["challenge"], "challenge"),
            _decode_b64(document["signature"], "signature"))


def _cmd_verify(args: argparse.Namespace) -> int:
    from fastpath.offline import BundleError, OfflineBundle, OfflineVerifier

    try:
        bundle = OfflineBundle.load(args.dir, now=args.at)
    except BundleError as exc:
        raise UsageError(f"no usable bundle in {args.dir} ({exc}); run 'verifier offline fetch' first") from None
    verifier = OfflineVerifier(bundle)
    data = _read_input(args.input)
    card = _card_read(data)
    if card is not None:
        # the read file's challenge is the terminal's own: vouched for by whoever made the file
        verdict = verifier.verify_card(*card, now=args.at, trusted_challenge=True)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the input is neither UTF-8 text (a QR code) nor a card read file") from None
        verdict = verifier.verify_qr(text.rstrip("\r\n"), args.at, cache=False)  # a space is base45: keep it
    if args.json:
        _write(verdict.as_dict())
    else:
        _print_verdict(verdict, bundle, card is not None)
    return EXIT_OK if verdict.ok else EXIT_NOT_VALID


def _print_verdict(verdict: Any, bundle: Any, card_read: bool) -> None:
    head = f"{verdict.result} ({verdict.profile or 'no profile'})"
    if verdict.reasons:
        head += ": " + ", ".join(verdict.reasons)
    if verdict.repeat:
        head += " (a repeat read)"
    print(head)
    permit = verdict.permit
    if permit is not None:
        if card_read:
            print(f"  card {permit.get('cn')} of permit {permit.get('pn')}")
        else:
            print(f"  permit {permit.get('pn')}: {permit.get('n')} ({permit.get('nat')}), category {permit.get('cat')}, "
                  f"valid {permit.get('vf')} to {permit.get('vt')}")
    if verdict.status_time is not None:
        print(f"  status: the {verdict.status_list} list as of {_utc(verdict.status_time)} ({verdict.age_s} s old, "
              f"fetched from {bundle.source or 'an unnamed service'})")
    elif verdict.permit is not None:
        print("  status: unknown offline")
    if card_read:
        print("  challenge: the read file's own (its freshness is the terminal's to vouch for)")
