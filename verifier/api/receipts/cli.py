"""``verifier receipt verify``: check a signed verdict receipt away from the service.

    verifier receipt verify FILE [--keys URL | FILE | DIR] [--json]

FILE is a verdict as the API answered it with ``"receipt": true`` (``-`` for stdin).
The receipt keys are the service's (``GET /v1/receipt-keys``): from its URL, from a
saved JWK Set, or from an offline bundle (``verifier offline fetch`` keeps them), so
that a case file can be checked with no network. Prints what the receipt attests:
who signed it, when the verdict was given, which permit, which result. Exit 0 only
when the signature holds over this very verdict, 1 when it does not, 2 for a usage
error (unreadable or not JSON, keys unreachable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

EXIT_OK = 0
EXIT_NOT_VALID = 1
EXIT_USAGE = 2
MAX_FILE_BYTES = 1 << 20


class UsageError(Exception):
    """Bad arguments or files: reported on stderr, exit code 2."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("receipt", help="signed verdict receipts, checked away from the service")
    commands = parser.add_subparsers(dest="receipt_command", metavar="ACTION", required=True)
    verify = commands.add_parser(
        "verify", help="check a verdict's receipt against the published receipt keys (exit 0 when it holds)",
        description="Check the receipt of a verdict (POST /v1/verify/... with \"receipt\": true) against the "
        "service's receipt keys, and print what it attests.",
    )
    verify.add_argument("file", metavar="FILE", help="the verdict as answered (JSON), or - for stdin")
    verify.add_argument("--keys", metavar="URL|FILE", required=False,
                        help="the receipt keys: the service's URL (its /v1/receipt-keys), a JWK Set file, or an "
                        "offline bundle (its directory or file)")
    verify.add_argument("--json", action="store_true", help="print the outcome as JSON")
    verify.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        return _verify(args)
    except UsageError as exc:
        print(f"verifier receipt verify: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _read(name: str, what: str) -> bytes:
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(name, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{what} {name} is over {MAX_FILE_BYTES} bytes")
    return data


def _json(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UsageError(f"{what} is not JSON") from None


def _keys(source: str | None) -> dict[str, Any]:
    if source is None:
        raise UsageError("--keys is needed: the service's URL, a JWK Set file, or an offline bundle")
    if source.startswith(("http://", "https://")):
        import httpx

        url = source if source.rstrip("/").endswith("/receipt-keys") else source.rstrip("/") + "/v1/receipt-keys"
        try:
            response = httpx.get(url, timeout=10.0)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot fetch the receipt keys from {url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise UsageError(f"GET {url}: HTTP {response.status_code}")
        document = _json(response.content[:MAX_FILE_BYTES + 1], f"the answer of {url}")
    else:
        path = Path(source)
        from fastpath.offline import BUNDLE_FILE

        document = _json(_read(str(path / BUNDLE_FILE if path.is_dir() else path), "the keys"), f"{source}")
        if isinstance(document, dict) and "receipt_keys" in document:  # an offline bundle
            document = document["receipt_keys"]
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UsageError(f"{source} holds no JWK Set of receipt keys")
    return document


def _verify(args: argparse.Namespace) -> int:
    from verifier.api.receipts.signer import check_receipt

    verdict = _json(_read(args.file, "the verdict"), "the verdict")
    if not isinstance(verdict, dict):
        raise UsageError("the file holds no verdict (a JSON object with a receipt)")
    check = check_receipt(verdict, _keys(args.keys))
    permit = verdict.get("permit") if isinstance(verdict.get("permit"), dict) else {}
    attests = {
        "signed_by": check.kid, "checked_at": verdict.get("checked_at"), "result": verdict.get("result"),
        "reasons": verdict.get("reasons"), "profile": verdict.get("profile"),
        "permit": permit.get("pn"), "holder": permit.get("n"),
    }
    if args.json:
        sys.stdout.buffer.write(orjson.dumps({"valid": check.ok, "reason": check.reason, **attests}) + b"\n")
    elif check.ok:
        reasons = attests["reasons"] if isinstance(attests["reasons"], list) else []
        print(f"receipt valid: {check.reason}")
        print(f"  who:    the verification service (receipt key {check.kid})")
        print(f"  when:   {attests['checked_at']}")
        print(f"  permit: {attests['permit']}" + (f" ({attests['holder']})" if attests["holder"] else ""))
        print(f"  result: {attests['result']}" + (f" ({', '.join(map(str, reasons))})" if reasons else "")
              + (f", a {attests['profile']} check" if attests["profile"] else ""))
    else:
        print(f"receipt NOT valid: {check.reason}")
    return EXIT_OK if check.ok else EXIT_NOT_VALID
