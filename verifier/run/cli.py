"""Sub-commands that run the service: ``serve`` and ``demo``.

    verifier serve [--redis URL] [--store URL] [--upstream URL] [--host H] [--port P] [--workers N]
    verifier demo [--port P] [--permits N] [--info FILE] [--state-dir DIR] [--redis URL] [--store URL] ...

Settings come from the environment (``verifier.lib.settings``); the flags override
them and bear the same names across the whole CLI. Exit codes (``verifier/cli.py``):
0 success, 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verifier.api.cli import STORE_HELP
from verifier.api.counter.flags import add_counter_flags, counter_overrides
from verifier.lib.logging import add_log_flags


def _at_least_one(text: str) -> int:
    """``--workers``: checked by argparse, so before anything reaches out to Redis."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve",
        help="serve the API (production: uvicorn, several workers)",
        description="Serve the API on uvicorn (uvloop, httptools, no access log) with several worker "
        "processes. Settings from the environment (REDIS_URL, VERIFIER_STORE_URL, UPSTREAM_URL, VERIFIER_HOST, "
        "VERIFIER_PORT, VERIFIER_WORKERS, VERIFIER_AUDIT_DIR, VERIFIER_STALENESS_BOUND_S, VERIFIER_RATE_LIMIT_PER_S, "
        "...); flags override them. With no Redis URL a private server is started for the index, and with no "
        "store URL either, a second one for the store of record (data under --state-dir).",
    )
    serve.add_argument("--redis", default=None, help="the index's Redis URL (default: $REDIS_URL)")
    serve.add_argument("--store", default=None, help=STORE_HELP)
    serve.add_argument("--upstream", default=None, help="upstream base URL (default: $UPSTREAM_URL)")
    serve.add_argument("--host", default=None, help="address to bind (default: $VERIFIER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port to bind, 0 for any (default: $VERIFIER_PORT or 8000)")
    serve.add_argument("--workers", type=_at_least_one, default=None, help="worker processes (default: $VERIFIER_WORKERS or 2)")
    serve.add_argument("--state-dir", type=Path, default=None, help="private Redis data (default: .state)")
    serve.add_argument("--audit-dir", default=None,
                       help="the audit's append-only files (default: $VERIFIER_AUDIT_DIR or STATE_DIR/audit)")
    add_log_flags(serve)
    add_counter_flags(serve)
    serve.set_defaults(func=_serve)

    demo = subparsers.add_parser(
        "demo",
        help="run everything on this machine and print keys and sample requests",
        description="Start two private Redis-protocol servers (the index's and the store of record's), the upstream simulator with demo permits, the sync "
        "job and the API; print the URL, one API key per role and ready-to-paste curl commands. A process that dies "
        "is started again (--restarts). Ctrl-C stops all.",
    )
    demo.add_argument("--port", type=int, default=8000, help="API port, 0 for a free one (default 8000)")
    demo.add_argument("--host", default="127.0.0.1", help="API bind address (default 127.0.0.1)")
    demo.add_argument("--permits", type=int, default=3000, help="demo permits in the simulator (default 3000)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the demo permits (default 1)")
    demo.add_argument("--event-rate", type=float, default=2.0, help="lifecycle events per second (default 2)")
    demo.add_argument("--workers", type=_at_least_one, default=2, help="API worker processes (default 2)")
    from verifier.issuing.keys import ALG_NAMES

    demo.add_argument("--issuer-alg", choices=ALG_NAMES, default="EdDSA",
                      help="the simulated issuer signs with Ed25519 (EdDSA, default) or SM2 with SM3 (SM2-SM3)")
    demo.add_argument("--rate-limit", type=float, default=None,
                      help="requests/s per API key (default: $VERIFIER_RATE_LIMIT_PER_S or 200); "
                      "raise it for load tests")
    demo.add_argument("--state-dir", type=Path, default=None, help="where Redis data and logs go (default: .state)")
    demo.add_argument("--info", type=Path, default=None, metavar="FILE",
                      help="also write url, keys, upstream and samples as JSON (removed on exit: it holds keys)")
    demo.add_argument("--redis", default=None, help="use this Redis for the index instead of a private one")
    demo.add_argument("--store", default=None, help="use this Redis for the store of record instead of a private "
                      "one (default: --redis's when given)")
    add_log_flags(demo)
    demo.add_argument("--restarts", type=int, default=5, metavar="N",
                      help="restart a process that dies up to N times (with back-off) before giving up (default 5; "
                      "0: stop everything at the first death)")
    demo.set_defaults(func=_demo)


def _usage_error(message: str) -> int:
    print(f"verifier: {message}", file=sys.stderr)
    return 2


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` is taken (bound as uvicorn binds it, SO_REUSEADDR); 0 never is."""
    import errno
    import socket

    if not port:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _busy_port(host: str, port: int, command: str) -> str:
    return (f"port {port} on {host} is in use (another `verifier {command}`, or another server?): stop that one, "
            f"or pass --port N (--port 0 picks a free one)")


def _serve(args: argparse.Namespace) -> int:
    from verifier.lib.settings import Settings
    from verifier.run.serve import serve

    try:
        settings = Settings.from_env(
            redis_url=args.redis, store_url=args.store, upstream_url=args.upstream, host=args.host, port=args.port,
            audit_dir=args.audit_dir, workers=args.workers, state_dir=args.state_dir, log_level=args.log_level,
            log_format=args.log_format, **counter_overrides(args),
        )
    except ValueError as exc:  # a CORS or card-bridge origin that is not one
        return _usage_error(str(exc))
    if settings.workers < 1:
        return _usage_error("--workers must be at least 1")
    refused = _cannot_listen(settings.host, settings.port, "serve")
    if refused is not None:
        return refused
    return serve(settings)


def _cannot_listen(host: str, port: int, command: str) -> int | None:
    """The usage error (exit 2) when ``host:port`` is taken or not this machine's, else None."""
    try:
        if port_in_use(host, port):
            return _usage_error(_busy_port(host, port, command))
    except OSError as exc:  # an address this machine does not have
        return _usage_error(f"cannot listen on {host}:{port}: {exc.strerror}")
    return None


def _demo(args: argparse.Namespace) -> int:
    from verifier.lib.settings import Settings
    from verifier.run.demo import DemoOptions, run_demo

    if args.permits < 10:
        return _usage_error("--permits must be at least 10")
    try:
        settings = Settings.from_env(state_dir=args.state_dir, log_level=args.log_level, log_format=args.log_format)
    except ValueError as exc:
        return _usage_error(str(exc))
    if args.restarts < 0:
        return _usage_error("--restarts must be 0 or more")
    refused = _cannot_listen(args.host, args.port, "demo")
    if refused is not None:
        return refused
    return run_demo(DemoOptions(
        state_dir=settings.state_dir, host=args.host, port=args.port, workers=args.workers,
        permits=args.permits, seed=args.seed, event_rate=args.event_rate, rate_limit_per_s=args.rate_limit,
        info_file=args.info, redis_url=args.redis or "", store_url=args.store or "", issuer_alg=args.issuer_alg,
        log_level=settings.log_level, log_format=settings.log_format, max_restarts=args.restarts,
    ))
