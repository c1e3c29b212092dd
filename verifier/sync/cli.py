"""The sync job's sub-commands.

``verifier sync``: run the sync job (leader or standby) until SIGINT/SIGTERM.

``verifier index check``: compare the permit index with the upstream (an operator's
check). Exit 0 when identical, 1 when not (differences printed), 2 when the comparison
could not be made (usage error, upstream or Redis unusable). How it stays correct
while both sides keep changing: :mod:`verifier.sync.check`.
"""

from __future__ import annotations

import argparse
import sys

from verifier.lib.logging import add_log_flags, configure_logging
from verifier.lib.long_running import NO_REDIS_URL, run_until_signalled
from verifier.lib.progress import add_progress_flag, configure_progress, progress_override


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
                        help="leader lock expiry in seconds, renewed every third of it (default: settings, 1.0)")
    parser.add_argument("--instance", default=None,
                        help="this job's identity across restarts (no ':'; default: $VERIFIER_SYNC_INSTANCE, "
                        "else the host name): a restarted job reclaims its dead predecessor's lock at once")
    parser.add_argument("--accept-regression", action="store_true", default=None,
                        help="switch in an upstream state older than the index's without waiting for "
                        "`verifier index accept-regression` (still alerts)")
    parser.add_argument("--page-size", type=int, default=None, help="events per feed page (default 1000)")
    add_log_flags(parser)
    add_progress_flag(parser)
    parser.set_defaults(func=_run)

    index = subparsers.add_parser("index", help="operate on the permit index in Redis")
    commands = index.add_subparsers(dest="index_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="compare the index with the upstream's snapshot (exit 0 identical, 1 not)",
        description="Compare every permit of the index with the upstream at the same feed sequence "
        "number; changes in flight that the feed confirms are not differences.",
    )
    check.add_argument("--upstream", default=None, help="upstream base URL (default: $UPSTREAM_URL)")
    check.add_argument("--redis", default=None, help="Redis URL (default: $REDIS_URL)")
    check.add_argument("--wait", type=float, default=60.0,
                       help="seconds to wait for the index to reach the snapshot's sequence (default 60)")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.add_argument("--max-listed", type=int, default=50, help="differences to list (default 50)")
    add_progress_flag(check)
    check.set_defaults(func=_check)

    accept = commands.add_parser(
        "accept-regression",
        help="accept the upstream's older state the sync job is holding back (versions went back)",
        description="The sync job found that the upstream's snapshot takes permits back to lower versions "
        "than the index holds (the upstream was restored to an older state) and waits, the index going "
        "stale. This accepts it: the sync job switches the older state in and keeps the former versions "
        "as floors, so codes minted from the lost versions answer SUPERSEDED. Exit 0 accepted, 1 nothing "
        "to accept, 2 Redis unusable.",
    )
    accept.add_argument("--redis", default=None, help="Redis URL (default: $REDIS_URL)")
    accept.set_defaults(func=_accept_regression)


def _run(args: argparse.Namespace) -> int:
    from verifier.lib.settings import Settings

    try:
        settings = Settings.from_env(
            redis_url=args.redis,
            upstream_url=args.upstream,
            sync_poll_interval_s=args.poll_interval,
            sync_lock_ttl_s=args.lock_ttl,
            sync_instance=args.instance,
            sync_accept_regression=args.accept_regression,
            sync_page_size=args.page_size,
            log_level=args.log_level,
            log_format=args.log_format,
            progress=progress_override(args.progress),
        )
    except ValueError as exc:  # a setting of the environment that is not one (VERIFIER_LOG_FORMAT=xml)
        print(f"verifier sync: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)  # httpx held at WARNING: a line per request otherwise
    configure_progress(settings.progress, settings.log_format)
    if not settings.redis_url:
        print(f"verifier sync: {NO_REDIS_URL}", file=sys.stderr)
        return 2
    if not settings.upstream_url:
        print("verifier sync: no upstream URL: set UPSTREAM_URL or pass --upstream", file=sys.stderr)
        return 2

    from verifier.sync.job import SyncJob

    return run_until_signalled("sync", lambda stop: SyncJob(settings, stop))


def _check(args: argparse.Namespace) -> int:
    import msgspec

    from verifier.lib.redis_client import sync_client
    from verifier.lib.settings import Settings
    from verifier.sync.check import CheckError, check_index
    from verifier.sync.upstream_client import UpstreamClient

    try:
        settings = Settings.from_env(redis_url=args.redis, upstream_url=args.upstream,
                                     progress=progress_override(args.progress))
    except ValueError as exc:
        print(f"verifier index check: {exc}", file=sys.stderr)
        return 2
    configure_logging("WARNING", settings.log_format)
    configure_progress(settings.progress, settings.log_format)
    if not settings.redis_url or not settings.upstream_url:
        print("verifier index check: needs --redis (or REDIS_URL) and --upstream (or UPSTREAM_URL)",
              file=sys.stderr)
        return 2
    redis_client = sync_client(settings.redis_url)
    try:
        with UpstreamClient(settings.upstream_url, retries=3) as upstream:
            report = check_index(redis_client, upstream, wait_s=args.wait, page_size=settings.sync_page_size)
    except (CheckError, ValueError) as exc:
        print(f"verifier index check: {exc}", file=sys.stderr)
        return 2
    finally:
        redis_client.close()
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(f"index check: {report.reason}")
        print(f"  upstream: feed {report.feed_id}, snapshot at seq {report.snapshot_seq}, "
              f"{report.upstream_permits} permits")
        print(f"  index:    cursor {report.index_cursor_before}..{report.index_cursor_after}, "
              f"{report.index_permits} permits; {report.explained_by_feed} changed since the snapshot "
              "as the feed confirms")
        for difference in report.differences[: args.max_listed]:
            detail = f" ({', '.join(difference.fields)})" if difference.fields else ""
            print(f"  {difference.kind}: {difference.pn} upstream v={difference.upstream_v} "
                  f"index v={difference.index_v}{detail}")
        if len(report.differences) > args.max_listed:
            print(f"  ... and {len(report.differences) - args.max_listed} more")
    return 0 if report.identical else 1


def _accept_regression(args: argparse.Namespace) -> int:
    import datetime as dt

    from verifier.index.regression import accept_pending
    from verifier.lib.redis_client import sync_client
    from verifier.lib.redis_errors import REDIS_UNAVAILABLE
    from verifier.lib.settings import Settings

    settings = Settings.from_env(redis_url=args.redis)
    if not settings.redis_url:
        print("verifier index accept-regression: needs --redis (or REDIS_URL)", file=sys.stderr)
        return 2
    redis_client = sync_client(settings.redis_url)
    try:
        found = accept_pending(redis_client)
    except REDIS_UNAVAILABLE as exc:
        print(f"verifier index accept-regression: Redis: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        redis_client.close()
    if found is None:
        print("no upstream regression is waiting for acceptance")
        return 1
    when = dt.datetime.fromtimestamp(found.detected_at, dt.timezone.utc).isoformat(timespec="seconds")
    print(f"accepted the upstream regression found at {when}: {found.permits} permits go back "
          f"(index feed {found.index_feed_id} seq {found.index_seq} -> upstream feed {found.upstream_feed_id} "
          f"seq {found.upstream_seq}); the sync job switches it in")
    return 0
