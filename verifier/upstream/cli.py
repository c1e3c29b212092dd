"""``verifier upstream``: run the upstream simulator."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time

from verifier.lib.logging import add_log_flags, configure_logging, notice

log = logging.getLogger("verifier.upstream")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "upstream",
        help="run the upstream permit system simulator (feed, snapshot, trust list, issuing)",
        description="Serve N synthetic permits, deterministic for a seed, with a change feed, "
        "snapshots, a trust list, issuing endpoints and fault switches (see verifier.upstream).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to bind (default 8090)")
    parser.add_argument("--permits", type=int, default=10_000, help="number of seeded permits (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (default 1)")
    parser.add_argument("--event-rate", type=float, default=0.0, help="random lifecycle events per second (default 0)")
    parser.add_argument("--retain", type=int, default=200_000, help="events the feed keeps (older cursors get 410)")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=None,
                        help="date the seeded validity periods are relative to (default: today)")
    parser.add_argument("--keys", default=None,
                        help="issuer key directory (verifier issuer keygen --out DIR); default: keys derived from the seed")
    from verifier.issuing.keys import ALG_NAMES

    parser.add_argument("--alg", choices=ALG_NAMES, default="EdDSA",
                        help="algorithm of the keys derived from the seed: EdDSA (Ed25519, default) or SM2-SM3 "
                        "(SM2 with SM3, WIRE-FORMAT 9); a --keys directory has its own")
    parser.add_argument("--status-lists", default=None, metavar="URL",
                        help="where the service publishes its Status Lists: the uri of the status claim of every "
                        "code and card minted (default: $VERIFIER_STATUS_LIST_BASE_URL, else the API's default "
                        "address, http://127.0.0.1:8000/v1/status-lists)")
    parser.add_argument("--warm", action=argparse.BooleanOptionalAction, default=None,
                        help="encode the whole snapshot before serving (default: on above 100,000 permits)")
    add_log_flags(parser, level_default="warning")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from verifier.index.status_lists import base_uri
    from verifier.lib.settings import Settings
    from verifier.upstream.server import serve
    from verifier.upstream.simulator import Upstream

    try:
        settings = Settings.from_env(log_format=args.log_format)
    except ValueError as exc:
        print(f"verifier upstream: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    key_ring = None
    if args.keys:
        from verifier.issuing import KeyFileError, KeyRing

        try:
            key_ring = KeyRing.load(args.keys)
        except (KeyFileError, OSError) as exc:
            print(f"verifier upstream: {exc}", file=sys.stderr)
            return 2
    try:
        upstream = Upstream.create(
            permits=args.permits, seed=args.seed, as_of=args.as_of, event_rate=args.event_rate,
            retain=args.retain, key_ring=key_ring, issuer_alg=args.alg,
            status_list_base=args.status_lists or base_uri(settings),
        )
    except ValueError as exc:
        print(f"verifier upstream: {exc}", file=sys.stderr)
        return 2
    warm = args.warm if args.warm is not None else args.permits > 100_000
    if warm:
        started = time.perf_counter()
        upstream.warm()
        notice(log, f"upstream: snapshot of {args.permits} permits encoded in {time.perf_counter() - started:.1f} s",
               stream=sys.stderr)
    notice(log, f"upstream: http://{args.host}:{args.port} permits={args.permits} seed={args.seed} "
           f"feed_id={upstream.feed_id}", stream=sys.stderr)
    serve(upstream, host=args.host, port=args.port, log_level=(args.log_level or settings.log_level).lower())
    return 0
