"""``verifier notify``: the notifier process, its dead letters, a tiny receiver.

    verifier notify [--redis URL] [--store URL] [--metrics-port P] [--concurrency N]
    verifier notify dead-letters list [--subscription ID] [--limit N] [--json]
    verifier notify dead-letters resend (--all | ID ...) [--subscription ID]
    verifier notify receiver [--port P] [--secret-file FILE] [--record FILE]

Exit codes (``verifier/cli.py``): 0 success, 1 nothing to do (no such dead letter),
2 a usage error (no Redis URL).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from verifier.lib.logging import add_log_flags
from verifier.lib.long_running import NO_REDIS_URL


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "notify",
        help="deliver notifications (signed webhooks) to partners and the e-card platform",
        description="Fan the index's change stream, the expiry reminders and (opt-in) verifications out to the "
        "webhook subscriptions, and deliver them: Standard Webhooks, at least once, in order per permit, retried "
        "for 3 days. Run several: they share the partitions of the outbox; one leads the fan-out.",
    )
    parser.add_argument("--redis", default=None, help="the index's Redis URL (default: $REDIS_URL)")
    parser.add_argument("--store", default=None,
                        help="the store of record's Redis URL (default: $VERIFIER_STORE_URL, else the index's)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus /metrics on this port (default: $VERIFIER_NOTIFY_METRICS_PORT; 0 none)")
    parser.add_argument("--concurrency", type=int, default=None, help="deliveries at once (default 64)")
    add_log_flags(parser)
    parser.set_defaults(func=_run)
    commands = parser.add_subparsers(dest="notify_command", metavar="COMMAND")

    dead = commands.add_parser("dead-letters", help="messages that were not delivered within the retry window")
    dead_commands = dead.add_subparsers(dest="dead_command", metavar="COMMAND", required=True)
    listing = dead_commands.add_parser("list", help="list dead letters, newest first")
    listing.add_argument("--subscription", default=None, help="only this subscription's")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON object a line, with the body")
    resend = dead_commands.add_parser("resend", help="queue dead letters again (same webhook-id)")
    resend.add_argument("ids", nargs="*", help="dead letter ids (from list)")
    resend.add_argument("--all", action="store_true", help="every dead letter (of --subscription, if given)")
    resend.add_argument("--subscription", default=None)
    for command in (listing, resend):
        command.add_argument("--redis", default=None, help="the index's Redis URL (default: $REDIS_URL)")
        command.add_argument("--store", default=None, help="the store of record (default: $VERIFIER_STORE_URL)")
    dead.set_defaults(func=_dead_letters)

    receiver = commands.add_parser("receiver", help="a tiny webhook receiver that prints what arrives")
    receiver.add_argument("--host", default="127.0.0.1")
    receiver.add_argument("--port", type=int, default=8099)
    receiver.add_argument("--secret-file", type=Path, default=None,
                          help='JSON {"secret": "whsec_...", "public_key": "whpk_..."} to check signatures with')
    receiver.add_argument("--record", type=Path, default=None, help="also append one JSON line per delivery here")
    add_log_flags(receiver, level_default="warning")
    receiver.set_defaults(func=_receiver)


def _settings(args: argparse.Namespace, **more: Any) -> Any:
    from verifier.lib.settings import Settings

    return Settings.from_env(redis_url=args.redis, store_url=args.store, **more)


def _run(args: argparse.Namespace) -> int:
    from verifier.lib.logging import configure_logging

    try:
        settings = _settings(args, notify_metrics_port=args.metrics_port, notify_concurrency=args.concurrency,
                             log_level=args.log_level, log_format=args.log_format)
    except ValueError as exc:  # a setting of the environment that is not one (VERIFIER_LOG_FORMAT=xml)
        print(f"verifier notify: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        print(f"verifier notify: {NO_REDIS_URL}", file=sys.stderr)
        return 2
    from verifier.notify.notifier import Notifier

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        notifier = Notifier(settings)
        if settings.notify_metrics_port:
            notifier.metrics.serve(settings.notify_metrics_port)
        await notifier.run(stop)

    try:
        asyncio.run(main())
    except ValueError as exc:
        print(f"verifier notify: {exc}", file=sys.stderr)
        return 2
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    import msgspec

    from verifier.lib.redis_client import async_client
    from verifier.notify.store import NotifyStore

    settings = _settings(args)
    if not settings.store_url_or_index:
        print("verifier notify dead-letters: no Redis URL: set VERIFIER_STORE_URL or REDIS_URL", file=sys.stderr)
        return 2
    if args.dead_command == "resend" and not args.ids and not args.all:
        print("verifier notify dead-letters resend: name dead letter ids, or --all", file=sys.stderr)
        return 2

    async def main() -> int:
        client = async_client(settings.store_url_or_index)
        store = NotifyStore(client)
        try:
            if args.dead_command == "list":
                for letter in await store.dead_letters(args.subscription, args.limit):
                    if args.json:
                        item = msgspec.to_builtins(letter) | {"body": letter.body.decode("utf-8", "replace")}
                        print(msgspec.json.encode(item).decode())
                    else:
                        print(f"{letter.id}  {letter.subscription}  {letter.type:<18} {letter.webhook_id}  "
                              f"{letter.attempts} attempts  {letter.reason}")
                return 0
            if args.all:
                letters = await store.dead_letters(args.subscription, limit=1_000_000)
            else:
                found = [await store.dead_letter(i) for i in args.ids]
                letters = [letter for letter in found if letter is not None]
                for missing in sorted(set(args.ids) - {letter.id for letter in letters}):
                    print(f"no dead letter {missing}", file=sys.stderr)
            resent, refused = await store.resend(letters)
            print(f"resent {len(resent)}" + (f"; {len(refused)} refused (their subscription is gone)" if refused else ""))
            return 0 if resent or args.all else 1
        finally:
            await client.aclose()

    return asyncio.run(main())


def _receiver(args: argparse.Namespace) -> int:
    from verifier.lib.logging import configure_logging
    from verifier.lib.settings import Settings
    from verifier.notify.receiver import serve_receiver

    settings = Settings.from_env(log_format=args.log_format)
    configure_logging(args.log_level or "WARNING", settings.log_format)
    serve_receiver(args.host, args.port, args.secret_file, args.record)
    return 0
