"""``verifier status-lists``: the status-list writer and its signing keys.

    verifier status-lists run [--redis URL] [--store URL] [--ttl S] [--lifetime S] [--base URL]
    verifier status-lists keys list|rotate [--store URL]
    verifier status-lists keys revoke --kid KID [--store URL]

``run`` leads or stands by until SIGINT/SIGTERM (run two: one signs). ``keys`` acts on
the ring in the store of record; a running writer takes a change within 5 s (it
publishes the new public key first, then re-signs). Key commands print JSON with the
public parts only. Exit codes: 0 done, 2 a usage error or an unusable store.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from verifier.lib.logging import add_log_flags, configure_logging
from verifier.lib.long_running import NO_REDIS_URL, run_until_signalled
from verifier.lib.progress import add_progress_flag, configure_progress, progress_override


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "status-lists",
        help="publish the signed Status Lists of permits and cards (WIRE-FORMAT 8), and manage their keys",
        description="Keep the 'permits' and 'cards' Status Lists current from the permit index, signed "
        "with a key set of their own (kept in the store of record), for GET /v1/status-lists/{name}.",
    )
    commands = parser.add_subparsers(dest="status_lists_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="the status-list writer (leader or standby) until stopped")
    _connection_flags(run)
    run.add_argument("--ttl", type=int, default=None,
                     help="a list's ttl in seconds: re-signed at least this often (default: settings, 300)")
    run.add_argument("--lifetime", type=int, default=None,
                     help="a list's exp - iat in seconds (default: settings, 3600)")
    run.add_argument("--base", default=None, metavar="URL",
                     help="the URI prefix of the lists (default: $VERIFIER_STATUS_LIST_BASE_URL, else "
                     "http://HOST:PORT/v1/status-lists of the API's settings)")
    add_log_flags(run)
    add_progress_flag(run)
    run.set_defaults(func=_run)

    keys = commands.add_parser("keys", help="the Status List signing keys in the store of record")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    for action, text in (("list", "the keys and their statuses"),
                         ("rotate", "a new active key; the active one becomes retired (still verifies)")):
        sub = actions.add_parser(action, help=text)
        _connection_flags(sub)
        sub.set_defaults(func=_keys)
    revoke = actions.add_parser("revoke", help="mark a key compromised: every list it signed is refused")
    _connection_flags(revoke)
    revoke.add_argument("--kid", required=True, help="the key's kid (as in the trust list; --kid=KID if it starts with -)")
    revoke.set_defaults(func=_keys)


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default=None, help="the index's Redis URL (default: $REDIS_URL)")
    parser.add_argument("--store", default=None,
                        help="the store of record's URL, where the signing keys are (default: $VERIFIER_STORE_URL, "
                        "else the index's Redis)")


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from verifier.lib.settings import Settings

    return Settings.from_env(redis_url=args.redis, store_url=args.store, **extra)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args, status_list_ttl_s=args.ttl, status_list_lifetime_s=args.lifetime,
                             status_list_base_url=args.base, log_level=args.log_level, log_format=args.log_format,
                             progress=progress_override(args.progress))
    except ValueError as exc:  # a setting of the environment that is not one (VERIFIER_LOG_FORMAT=xml)
        print(f"verifier status-lists run: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    configure_progress(settings.progress, settings.log_format)
    if not settings.redis_url:
        print(f"verifier status-lists run: {NO_REDIS_URL}", file=sys.stderr)
        return 2
    from verifier.status_lists.writer import StatusListWriter

    return run_until_signalled("status-lists run", lambda stop: StatusListWriter(settings, stop))


def _keys(args: argparse.Namespace) -> int:
    import orjson

    from verifier.index.status_lists import base_uri
    from verifier.lib.redis_client import sync_client
    from verifier.lib.redis_errors import REDIS_UNAVAILABLE
    from verifier.status_lists import keys as signing_keys

    settings = _settings(args)
    where = settings.store_url_or_index
    if not where:
        print("verifier status-lists keys: no store: set VERIFIER_STORE_URL or REDIS_URL, or pass --store",
              file=sys.stderr)
        return 2
    store = sync_client(where)
    try:
        if args.keys_command == "list":
            held = store.get(signing_keys.SIGNING_KEYS_KEY)
            if held is None:
                raise signing_keys.StatusKeyError("no Status List signing keys in the store yet")
            ring, changed = signing_keys.decode_ring(held), None
        elif args.keys_command == "rotate":
            if store.exists(signing_keys.SIGNING_KEYS_KEY):
                ring, changed = signing_keys.rotate(store)
            else:  # an empty store: the first key, as the writer would make it
                ring = signing_keys.load_or_create(store, [base_uri(settings)])
                changed = ring.active
        else:
            ring, changed = signing_keys.revoke(store, args.kid)
    except signing_keys.StatusKeyError as exc:
        print(f"verifier status-lists keys: {exc}", file=sys.stderr)
        return 2
    except REDIS_UNAVAILABLE as exc:
        print(f"verifier status-lists keys: the store cannot be reached ({type(exc).__name__})", file=sys.stderr)
        return 2
    finally:
        store.close()
    out: dict[str, Any] = {"keys": [{"kid": k.kid_text, "status": k.status, "iss": list(k.issuers),
                                     "created": k.created} for k in ring]}
    if changed is not None:
        out["changed"] = changed.kid_text
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    return 0
