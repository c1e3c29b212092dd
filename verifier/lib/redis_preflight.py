"""Before a command that talks to Redis runs: which Redis, is its URL one, does it answer.

- **Which**: ``--redis``/``--store``, else ``$REDIS_URL``/``$VERIFIER_STORE_URL``, else
  (for the commands that manage a running service: ``api-keys``, ``audit``, ``index``,
  ``notify``, ``status-lists``, ``sync``, ``terminals``, ...) the demo's private servers,
  found as the demo itself finds them: the URL files its servers write into the state
  folder (``$VERIFIER_STATE_DIR``, default ``.state``: ``redis.url`` for the index,
  ``store.url`` for the store of record). The command says so on stderr.
- **A URL**: a malformed one (a scheme Redis does not have, a port that is not a number,
  no host) is one line on stderr and exit code 2.
- **Answers**: each URL is pinged once (2 s at most); one that cannot be reached is one
  line and exit code 2, with what to do, instead of a traceback from deep inside.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEMO_URL_FILES", "PreflightError", "demo_urls", "preflight", "redacted"]

DEMO_URL_FILES = {"redis": "redis.url", "store": "store.url"}
"""The files in the state folder that the demo's private servers write their URL to
(``verifier.run.private_redis``: INDEX, STORE)."""

# Commands that start their own private Redis when given none: never pointed elsewhere.
_OWN_REDIS = frozenset({"serve", "demo"})
_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})
PING_TIMEOUT_S = 2.0


class PreflightError(Exception):
    """What is wrong, in one line, for stderr (exit code 2)."""


def redacted(url: str) -> str:
    """``url`` without its password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def demo_urls(state_dir: Path) -> dict[str, str]:
    """The running demo's Redis URLs (``redis``, ``store``) from ``state_dir``; empty if none runs there."""
    found = {}
    for name, file_name in DEMO_URL_FILES.items():
        try:
            url = (state_dir / file_name).read_text().strip()
        except OSError:
            continue
        if url:
            found[name] = url
    return found


def check_url(url: str, flag: str) -> None:
    """Raise :class:`PreflightError` unless ``url`` is a Redis URL this project can use."""
    from verifier.lib.redis_client import CLUSTER_SCHEMES, _parse_cluster_url

    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(f"the scheme must be one of {', '.join(sorted(_SCHEMES))}"
                             + (f", not {scheme!r}" if scheme else " (none given)"))
        if scheme in CLUSTER_SCHEMES:
            _parse_cluster_url(url)
        elif scheme != "unix":
            if not parts.hostname:
                raise ValueError("no host")
            _ = parts.port  # ValueError for a port that is not a number in 0-65535
            database = parts.path.lstrip("/")
            if database and not database.isdigit():
                raise ValueError(f"the database (the path) must be a number, not {database!r}")
        elif not parts.path:
            raise ValueError("a unix:// URL needs the socket's path")
    except ValueError as exc:
        raise PreflightError(f"{flag} {redacted(url)!r} is not a Redis URL: {exc} "
                             "(e.g. redis://127.0.0.1:6380/0)") from None


def ping(url: str, what: str, flag: str) -> None:
    """Raise :class:`PreflightError` unless the Redis at ``url`` answers a PING within 2 s."""
    from redis.exceptions import AuthenticationError, RedisError

    from verifier.lib.redis_client import sync_client

    client = None
    try:
        client = sync_client(url, socket_connect_timeout=PING_TIMEOUT_S, socket_timeout=PING_TIMEOUT_S)
        client.ping()
    except AuthenticationError as exc:
        raise PreflightError(f"{what} at {redacted(url)} refused the credentials: {exc}") from None
    except (RedisError, OSError, ValueError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise PreflightError(f"{what} at {redacted(url)} cannot be reached ({reason}): start it, "
                             f"or point {flag} at one that runs") from None
    finally:
        if client is not None:
            client.close()


def preflight(args: argparse.Namespace, state_dir: Path, env_redis: str, env_store: str) -> str | None:
    """Settle ``args.redis``/``args.store`` and check them; a note for stderr when the demo's were taken.

    ``env_*`` are the settings' URLs (``$REDIS_URL``, ``$VERIFIER_STORE_URL``)."""
    has_redis, has_store = hasattr(args, "redis"), hasattr(args, "store")
    if not (has_redis or has_store):
        return None
    command = getattr(args, "command", "")
    redis_url = (getattr(args, "redis", None) or env_redis) if has_redis else ""
    store_url = (getattr(args, "store", None) or env_store) if has_store else ""
    note = None
    if not redis_url and not store_url and command not in _OWN_REDIS:
        found = demo_urls(state_dir)
        if found:
            if has_redis and "redis" in found:
                args.redis = redis_url = found["redis"]
            if has_store and "store" in found:
                args.store = store_url = found["store"]
            named = ", ".join(f"{'the index' if k == 'redis' else 'the store of record'} {redacted(v)}"
                              for k, v in found.items() if (k == "redis" and has_redis) or (k == "store" and has_store))
            note = f"verifier: using the running demo's Redis ({named}; from {state_dir}/*.url)"
    for url, what, flag in ((redis_url, "the index's Redis", "--redis (or REDIS_URL)"),
                            (store_url, "the store of record's Redis", "--store (or VERIFIER_STORE_URL)")):
        if url:
            check_url(url, flag.split(" ")[0])
    for url, what, flag in ((redis_url, "the index's Redis", "--redis (or REDIS_URL)"),
                            (store_url, "the store of record's Redis", "--store (or VERIFIER_STORE_URL)")):
        if url:
            ping(url, what, flag)
    return note
