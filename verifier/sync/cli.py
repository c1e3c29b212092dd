"""``verifier sync``: run the sync job (leader or standby) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "sync",
        help="mirror the upstream permit system into the Redis permit index",
        description="Follow the upstream's change feed into the permit index (full resync when "
        "needed). Run several: one leads, the others stand by and take over when it dies.",
    )
    parser.add_argument("--redis", default=None, help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--upstream", default=None, help="upstream base URL (default: $UPSTREAM_URL)")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="seconds between polls of the feed once caught up (default: settings, 0.2)")
    parser.add_argument("--lock-ttl", type=float, default=None,
                        help="leader lock expiry in seconds (default: settings, 10)")
    parser.add_argument("--page-size", type=int, default=None, help="events per feed page (default 1000)")
    parser.add_argument("--log-level", default=None, help="log level (default: settings, INFO)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from verifier.lib.settings import Settings

    settings = Settings.from_env(
        redis_url=args.redis,
        upstream_url=args.upstream,
        sync_poll_interval_s=args.poll_interval,
        sync_lock_ttl_s=args.lock_ttl,
        sync_page_size=args.page_size,
        log_level=args.log_level,
    )
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if not settings.redis_url:
        print("verifier sync: no Redis URL: set REDIS_URL or pass --redis", file=sys.stderr)
        return 2
    if not settings.upstream_url:
        print("verifier sync: no upstream URL: set UPSTREAM_URL or pass --upstream", file=sys.stderr)
        return 2

    from verifier.sync.job import SyncJob

    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        job = SyncJob(settings, stop)
    except ValueError as exc:
        print(f"verifier sync: {exc}", file=sys.stderr)
        return 2
    job.run()
    return 0
