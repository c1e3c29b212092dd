"""Sub-commands that operate the API: ``api-keys``, ``terminals``, ``audit`` (``serve`` and ``demo``
are registered by ``verifier.run.cli``, which owns them).

    verifier api-keys create --role ROLE --name NAME --organisation ORG [--employer CODE ...] [--full-fields]
    verifier api-keys add ...        (the same as create; --organisation defaults to --name)
    verifier api-keys list [--json]
    verifier api-keys revoke KEY_ID
    verifier terminals register --organisation ORG --id TERMINAL_ID --name NAME --place PLACE
    verifier terminals list [--json]
    verifier audit export --since ISO_OR_EPOCH [--until ...] > file.ndjson

Settings come from the environment (``verifier.lib.settings``); the flags override
them and bear the same names across the whole CLI. Exit codes (``verifier/cli.py``):
0 success, 1 a negative answer (no such key), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from verifier.lib.redis_client import AsyncRedisClient

T = TypeVar("T")


def _add_redis_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default=None, help="Redis URL (default: $REDIS_URL)")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = subparsers.add_parser("api-keys", help="create, list and revoke API keys",
                                 description="API keys in Redis: tokens are shown once and stored hashed.")
    commands = keys.add_subparsers(dest="api_keys_command", metavar="COMMAND", required=True)
    for command, organisation_required in (("create", True), ("add", False)):
        add = commands.add_parser(
            command, help="create a key and print its token (once)" if organisation_required
            else "the same as create (--organisation defaults to --name)")
        add.add_argument("--role", required=True,
                         help="exit_entry, service_hall, social_insurance, partner, admin or essc_platform")
        add.add_argument("--name", required=True, help="what the key is for (a desk, a partner system)")
        add.add_argument("--organisation", required=organisation_required, default=None, metavar="ORG",
                         help="the organisation the key is for, by the name holders see in 'who verified me' "
                         "(its terminals are registered under it)")
        add.add_argument("--employer", action="append", default=[], metavar="CODE",
                         help="partner keys: an employer's unified social credit code it may see (repeat)")
        add.add_argument("--full-fields", action="store_true",
                         help="partner keys: all fields of their employers' permits, not only the status")
        _add_redis_flag(add)
        add.set_defaults(func=_keys_add)
    listing = commands.add_parser("list", help="every key (never the secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    _add_redis_flag(listing)
    listing.set_defaults(func=_keys_list)
    revoke = commands.add_parser("revoke", help="revoke a key (by id, or by the whole token)")
    revoke.add_argument("key_id")
    _add_redis_flag(revoke)
    revoke.set_defaults(func=_keys_revoke)

    terminals = subparsers.add_parser(
        "terminals", help="register and list terminals (their names in 'who verified me')",
        description="Terminals by organisation: the id their checks send, and the name and place holders see.")
    terminal_commands = terminals.add_subparsers(dest="terminals_command", metavar="COMMAND", required=True)
    register_cmd = terminal_commands.add_parser("register", help="register a terminal, or rename or move it")
    register_cmd.add_argument("--organisation", required=True, metavar="ORG",
                              help="the organisation (of 'api-keys create') whose keys send this terminal id")
    register_cmd.add_argument("--id", required=True, dest="terminal_id", help="the terminal id its checks send")
    register_cmd.add_argument("--name", required=True, help="what holders are shown, e.g. 'Desk 12'")
    register_cmd.add_argument("--place", required=True, help="where it stands, e.g. 'Pudong airport, T2 arrivals'")
    _add_redis_flag(register_cmd)
    register_cmd.set_defaults(func=_terminals_register)
    terminal_list = terminal_commands.add_parser("list", help="every registered terminal")
    terminal_list.add_argument("--json", action="store_true", help="one JSON object a line")
    _add_redis_flag(terminal_list)
    terminal_list.set_defaults(func=_terminals_list)

    audit = subparsers.add_parser("audit", help="the audit stream of verifications and look-ups")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    export = audit_commands.add_parser("export", help="write audit records as NDJSON to stdout")
    export.add_argument("--since", required=True, metavar="ISO_OR_EPOCH",
                        help="from this time: epoch seconds, a date or an RFC 3339 time (UTC if no offset)")
    export.add_argument("--until", default=None, metavar="ISO_OR_EPOCH", help="up to this time (default: now)")
    _add_redis_flag(export)
    export.set_defaults(func=_audit_export)


def _usage_error(message: str) -> int:
    print(f"verifier: {message}", file=sys.stderr)
    return 2


def _with_redis(args: argparse.Namespace, work: Callable[[AsyncRedisClient], Awaitable[T]]) -> T:
    """Run ``work(redis)`` on an asyncio client of ``--redis``/``$REDIS_URL``."""
    from verifier.lib.redis_client import async_client
    from verifier.lib.settings import Settings

    url = Settings.from_env(redis_url=args.redis).redis_url
    if not url:
        raise _NoRedis()

    async def run() -> T:
        redis = async_client(url)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


class _NoRedis(Exception):
    pass


def _redis_command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the ways a Redis command fails into exit codes with a reason, not a traceback."""

    def wrapper(args: argparse.Namespace) -> int:
        from redis.exceptions import RedisError

        try:
            return func(args)
        except _NoRedis:
            return _usage_error("no Redis URL: set REDIS_URL or pass --redis")
        except (RedisError, OSError) as exc:
            print(f"verifier: Redis: {exc}", file=sys.stderr)
            return 3

    return wrapper


@_redis_command
def _keys_add(args: argparse.Namespace) -> int:
    from verifier.api.auth.keys import ApiKeyError, add_api_key

    try:
        key_id, token = _with_redis(
            args, lambda r: add_api_key(r, args.role, args.name, args.employer, full_fields=args.full_fields,
                                        organisation=args.organisation)
        )
    except ApiKeyError as exc:
        return _usage_error(str(exc))
    print(msgspec.json.encode({"key_id": key_id, "token": token, "role": args.role, "name": args.name,
                               "organisation": args.organisation or args.name}).decode())
    print("The token is shown this once; only its hash is stored.", file=sys.stderr)
    return 0


@_redis_command
def _keys_list(args: argparse.Namespace) -> int:
    import datetime as dt

    from verifier.api.auth.keys import list_api_keys

    keys = _with_redis(args, list_api_keys)
    if args.json:
        for key in keys:
            print(msgspec.json.encode(key).decode())
        return 0

    def when(epoch: float | None) -> str:
        if epoch is None:
            return "-"
        return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    print(f"{'KEY_ID':<12}  {'ROLE':<16}  {'CREATED':<20}  {'REVOKED':<20}  NAME (EMPLOYERS) / ORGANISATION")
    for key in keys:
        employers = f" ({', '.join(key.employers)})" if key.employers else ""
        print(f"{key.key_id:<12}  {key.role:<16}  {when(key.created):<20}  {when(key.revoked):<20}  "
              f"{key.name}{employers} / {key.organisation}")
    return 0


@_redis_command
def _terminals_register(args: argparse.Namespace) -> int:
    from verifier.api.auth.terminals import TerminalError, register_terminal

    try:
        terminal, new = _with_redis(
            args, lambda r: register_terminal(r, args.organisation, args.terminal_id, args.name, args.place))
    except TerminalError as exc:
        return _usage_error(str(exc))
    print(msgspec.json.encode(terminal).decode())
    print("registered" if new else "renamed (earlier checks show the new name too)", file=sys.stderr)
    return 0


@_redis_command
def _terminals_list(args: argparse.Namespace) -> int:
    from verifier.api.auth.terminals import list_terminals

    terminals = _with_redis(args, list_terminals)
    if args.json:
        for terminal in terminals:
            print(msgspec.json.encode(terminal).decode())
        return 0
    print(f"{'ORGANISATION':<32}  {'TERMINAL_ID':<20}  NAME (PLACE)")
    for terminal in terminals:
        print(f"{terminal.organisation:<32}  {terminal.id:<20}  {terminal.name} ({terminal.place})")
    return 0


@_redis_command
def _keys_revoke(args: argparse.Namespace) -> int:
    from verifier.api.auth.keys import revoke_api_key

    if _with_redis(args, lambda r: revoke_api_key(r, args.key_id)):
        print(f"revoked {args.key_id[:16]}", file=sys.stderr)
        return 0
    print(f"verifier: no live key {args.key_id[:16]!r}", file=sys.stderr)
    return 1


@_redis_command
def _audit_export(args: argparse.Namespace) -> int:
    from verifier.api.audit.export import export_audit, parse_since

    try:
        since = parse_since(args.since)
        until = parse_since(args.until) if args.until else None
    except ValueError as exc:
        return _usage_error(f"--since/--until: {exc}")
    count = _with_redis(args, lambda r: export_audit(r, sys.stdout, since, until))
    sys.stdout.flush()
    print(f"exported {count} audit records", file=sys.stderr)
    return 0
