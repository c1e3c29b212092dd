"""The one command-line entry point of the project: ``verifier ...``.

Each capability registers its own sub-commands from its ``cli`` module; this file
only assembles them. Exit codes: 0 success (or VALID), 1 a negative answer
(a verdict other than VALID, a difference found), 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that expose ``register(subparsers)``; each adds its own sub-commands.
COMMAND_MODULES = (
    "verifier.issuing.cli",
    "verifier.upstream.cli",
    "verifier.sync.cli",
    "verifier.run.cli",
    "verifier.api.cli",
    "verifier.status_lists.cli",
    "verifier.offline.cli",
    "verifier.api.receipts.cli",
    "verifier.cardbridge.cli",
    "verifier.notify.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="verifier",
        description="Work permit verification service: verify QR codes and card reads, "
        "mirror the upstream permit system, serve the API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that capability is not part of this build
                continue
            raise
        module.register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("permit-verifier")
    except PackageNotFoundError:  # running from a tree that was not installed
        return "0 (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from redis.exceptions import RedisError

    from verifier.lib.redis_preflight import PreflightError, preflight, redacted
    from verifier.lib.settings import Settings

    try:
        settings = Settings.from_env(state_dir=getattr(args, "state_dir", None))
        note = preflight(args, settings.state_dir, settings.redis_url, settings.store_url)
    except PreflightError as exc:
        print(f"verifier: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a setting in the environment that is not one
        print(f"verifier: {exc}", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except RedisError as exc:  # Redis went away while the command ran: one line, not a traceback
        reason = str(exc).split("\n")[0] or type(exc).__name__
        print(f"verifier: Redis failed while {args.command} ran: {redacted(reason)}", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
