"""Sub-commands that operate the API: ``api-keys``, ``terminals``, ``audit`` (``serve`` and ``demo``
are registered by ``verifier.run.cli``, which owns them).

    verifier api-keys create --role ROLE --name NAME --organisation ORG [--employer CODE ...] [--full-fields]
    verifier api-keys add ...        (the same as create; --organisation defaults to --name)
    verifier api-keys list [--json]
    verifier api-keys revoke KEY_ID
    verifier terminals register --organisation ORG --id TERMINAL_ID --name NAME --place PLACE
    verifier terminals list [--json]
    verifier audit export --since ISO_OR_EPOCH [--until ...] > file.ndjson
    verifier audit verify [EXPORT.ndjson ...] [--files DIR] [--keys JWKS]   (default: the live stream)
    verifier audit keys [--files DIR]
    verifier audit restore [--files DIR]
    verifier audit retain --archive DIR [--max-age-days D] [--max-mb M]

Settings come from the environment (``verifier.lib.settings``); the flags override
them and bear the same names across the whole CLI. Exit codes (``verifier/cli.py``):
0 success, 1 a negative answer (no such key, a broken audit chain), 2 a usage error,
3 the store failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from verifier.lib.redis_client import AsyncRedisClient

T = TypeVar("T")


STORE_HELP = ("the store of record's Redis URL: API keys, the audit, what the upstream cannot rebuild "
              "(default: $VERIFIER_STORE_URL, else the index's Redis)")


def _add_redis_flag(parser: argparse.ArgumentParser) -> None:
    # These commands work on the store of record; --redis (the index's) is its fallback, as in `serve`.
    parser.add_argument("--store", default=None, help=STORE_HELP)
    parser.add_argument("--redis", default=None, help="the index's Redis URL, used when no store URL is set "
                        "(default: $REDIS_URL)")


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
    from verifier.lib.progress import add_progress_flag

    add_progress_flag(export)
    export.set_defaults(func=_audit_export)

    verify = audit_commands.add_parser(
        "verify", help="check the hash chain and signed checkpoints; names the first broken link",
        description="Check the audit's hash chain (every record's SHA-256 over its content and the record before "
        "it, per shard) and its signed checkpoints, in exports (in order: the oldest archive first), in an audit "
        "folder's files, or (neither given) in the live stream of the store. Exit 0: every link holds; 1: the "
        "first broken link is printed.")
    verify.add_argument("exports", nargs="*", metavar="EXPORT", help="NDJSON exports or archives ('-': stdin)")
    verify.add_argument("--files", type=Path, default=None, metavar="DIR", help="an audit folder (VERIFIER_AUDIT_DIR)")
    verify.add_argument("--keys", type=Path, default=None, metavar="JWKS",
                        help="the trusted checkpoint keys (as `verifier audit keys` prints them); default: the "
                        "keys the store publishes")
    _add_redis_flag(verify)
    verify.set_defaults(func=_audit_verify)

    keys_cmd = audit_commands.add_parser("keys", help="print the public checkpoint keys as a JWK Set",
                                         description="The public keys that sign the audit's checkpoints: those the "
                                         "store publishes, or the one of an audit folder (--files). Keep a copy "
                                         "apart from the store, for `audit verify --keys`.")
    keys_cmd.add_argument("--files", type=Path, default=None, metavar="DIR", help="an audit folder's own key")
    _add_redis_flag(keys_cmd)
    keys_cmd.set_defaults(func=_audit_keys)

    restore = audit_commands.add_parser(
        "restore", help="put an audit folder's records back into the store (those it lacks)",
        description="Deliver every record of an audit folder's shards that the store lacks (a store that was lost "
        "or replaced), as the workers do: records the stream holds already are not written again.")
    restore.add_argument("--files", type=Path, default=None, metavar="DIR",
                         help="the audit folder (default: $VERIFIER_AUDIT_DIR or STATE_DIR/audit)")
    _add_redis_flag(restore)
    restore.set_defaults(func=_audit_restore)

    retain = audit_commands.add_parser(
        "retain", help="trim the stream by age and size, exporting what goes first",
        description="Export the oldest stream entries that are older than --max-age-days, or that keep the "
        "stream over --max-mb, to an fsynced NDJSON archive in --archive, then trim exactly those (XTRIM MINID). "
        "Run it daily from a timer.")
    retain.add_argument("--archive", type=Path, required=True, metavar="DIR", help="where the archives go")
    retain.add_argument("--max-age-days", type=float, default=None, metavar="D", help="keep records this young")
    retain.add_argument("--max-mb", type=float, default=None, metavar="M", help="keep the stream under this size")
    _add_redis_flag(retain)
    retain.set_defaults(func=_audit_retain)


def _usage_error(message: str) -> int:
    print(f"verifier: {message}", file=sys.stderr)
    return 2


def _with_redis(args: argparse.Namespace, work: Callable[[AsyncRedisClient], Awaitable[T]]) -> T:
    """Run ``work(store)`` on an asyncio client of the store of record (``--store``/``$VERIFIER_STORE_URL``,
    else ``--redis``/``$REDIS_URL``)."""
    from verifier.lib.redis_client import TOOL_OPTIONS, async_client
    from verifier.lib.settings import Settings

    url = Settings.from_env(redis_url=args.redis, store_url=args.store).store_url_or_index
    if not url:
        raise _NoRedis()

    async def run() -> T:
        redis = async_client(url, TOOL_OPTIONS)  # not the API's 0.5 s: an export or a trim may take longer
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
            return _usage_error("no store URL: pass --store URL (or set VERIFIER_STORE_URL, or REDIS_URL), or run "
                                "`verifier demo` in this folder (its URLs are then found in .state/store.url)")
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
    from verifier.lib.progress import bar_enabled, configure_progress, progress_override
    from verifier.lib.settings import Settings

    settings = Settings.from_env(progress=progress_override(args.progress))
    configure_progress(settings.progress, settings.log_format)
    count = _with_redis(args, lambda r: export_audit(r, sys.stdout, since, until, progress=bar_enabled()))
    sys.stdout.flush()
    print(f"exported {count} audit records", file=sys.stderr)
    return 0


def _trusted_keys(args: argparse.Namespace) -> dict[str, bytes] | None:
    """``--keys``, else the store's published keys (None: no store to ask)."""
    import orjson

    from verifier.api.audit.chain import keys_of_jwks
    from verifier.api.audit.stream import read_keys

    if args.keys is not None:
        return keys_of_jwks(orjson.loads(args.keys.read_bytes()))
    try:
        return keys_of_jwks(_with_redis(args, read_keys))
    except _NoRedis:
        return None


@_redis_command
def _audit_verify(args: argparse.Namespace) -> int:
    from verifier.api.audit.verify import report_lines, verify_exports, verify_files, verify_stream

    if args.exports and args.files is not None:
        return _usage_error("audit verify: exports or --files, not both")
    try:
        keys = _trusted_keys(args)
    except (OSError, ValueError) as exc:
        return _usage_error(f"--keys: {exc}")
    if keys is None and args.files is not None and (args.files / "checkpoint-key").exists():
        from verifier.api.audit.chain import CheckpointSigner

        own = CheckpointSigner.load_or_create(args.files / "checkpoint-key")
        keys = {own.kid: own.public_key}
        print("audit verify: checkpoints checked against the folder's own key (--keys, a copy kept apart, "
              "is the stronger check)", file=sys.stderr)
    if keys is None:
        return _usage_error("no checkpoint keys to trust: pass --keys FILE (see `verifier audit keys`) or a store URL")
    try:
        if args.exports:
            verifier = verify_exports(args.exports, keys)
        elif args.files is not None:
            if not args.files.is_dir():
                return _usage_error(f"--files: {args.files} is not a folder")
            verifier = verify_files(args.files, keys)
        else:
            verifier = _with_redis(args, lambda r: verify_stream(r, keys))
    except FileNotFoundError as exc:
        return _usage_error(str(exc))
    for line in report_lines(verifier):
        print(line)
    return 0 if verifier.ok else 1


@_redis_command
def _audit_keys(args: argparse.Namespace) -> int:
    import orjson

    from verifier.api.audit.chain import CheckpointSigner
    from verifier.api.audit.stream import read_keys

    if args.files is not None:
        path = args.files / "checkpoint-key"
        if not path.exists():
            return _usage_error(f"{path}: no checkpoint key (has a worker ever written to this folder?)")
        jwks = {"keys": [CheckpointSigner.load_or_create(path).jwk()]}
    else:
        jwks = _with_redis(args, read_keys)
    print(orjson.dumps(jwks, option=orjson.OPT_INDENT_2).decode())
    return 0


@_redis_command
def _audit_restore(args: argparse.Namespace) -> int:
    from verifier.api.audit.history import HistoryPolicy
    from verifier.api.audit.retention import restore_from_files
    from verifier.lib.settings import Settings

    settings = Settings.from_env()
    folder = args.files if args.files is not None else settings.audit_path
    if not folder.is_dir():
        return _usage_error(f"{folder} is not an audit folder")
    # the "who verified me" index comes back with the records, kept as the service keeps it
    history = HistoryPolicy.of(settings.holder_history_days, settings.holder_history_cap)
    restored = _with_redis(args, lambda r: restore_from_files(r, folder, history))
    for shard, (taken, first) in sorted(restored.shards.items()):
        note = f" (its files begin at record {first}: the ones before are in the archive)" if first > 1 else ""
        print(f"shard {shard}: {taken} records restored{note}", file=sys.stderr)
    for shard in restored.forked:
        print(f"shard {shard}: NOT restored: the store holds other records under the same numbers", file=sys.stderr)
    print(f"restored {sum(t for t, _ in restored.shards.values())} audit records from {folder}", file=sys.stderr)
    return 1 if restored.forked else 0


@_redis_command
def _audit_retain(args: argparse.Namespace) -> int:
    from verifier.api.audit.retention import RetentionBusy, retain

    if args.max_age_days is None and args.max_mb is None:
        return _usage_error("audit retain: give --max-age-days, --max-mb or both")
    if (args.max_age_days is not None and args.max_age_days <= 0) or (args.max_mb is not None and args.max_mb <= 0):
        return _usage_error("audit retain: the bounds are positive numbers")
    try:
        done = _with_redis(args, lambda r: retain(r, args.archive, max_age_days=args.max_age_days,
                                                  max_mb=args.max_mb))
    except RetentionBusy as exc:
        print(f"verifier: {exc}", file=sys.stderr)
        return 1
    if done.archive is None:
        print("nothing to trim: the stream is within its bounds", file=sys.stderr)
    else:
        print(f"exported {done.records} records ({done.entries} stream entries) to {done.archive}, then trimmed "
              f"them from the stream", file=sys.stderr)
    return 0
