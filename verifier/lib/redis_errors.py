"""What "Redis cannot answer now" looks like from redis-py, defined once.

The API catches :data:`REDIS_UNAVAILABLE` around its own Redis calls (rate limits,
keys, audit, challenges) and answers STATUS_UNAVAILABLE or 503; the permit index
(reader and writer) and the sync job turn it into the index's ``IndexUnavailable``
with :func:`redis_unavailable`, so that their callers handle one exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import RedisError, ResponseError

__all__ = ["REDIS_UNAVAILABLE", "redis_unavailable"]

REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, AttributeError)
"""The exceptions that mean Redis cannot answer now: redis-py's own (a refused
connection, a timeout, a failover in progress, an error reply), and the socket's
(``OSError``; ``TimeoutError`` and ``asyncio.TimeoutError`` are among them from
Python 3.11). ``AttributeError`` is on the list on purpose: redis-py's asyncio
cluster client was seen raising "'NoneType' object has no attribute 'writelines'"
for seconds after a primary died. Catch it around a Redis call only, so that a
bug's own ``AttributeError`` is not taken for an outage."""

Failure = TypeVar("Failure", bound=Exception)


def redis_unavailable(exc: BaseException, failure: Callable[[str], Failure]) -> Failure:
    """``exc`` (one of :data:`REDIS_UNAVAILABLE`) as the caller's ``failure`` type, in
    the one wording of a Redis failure: "redis refused a command" when the server
    answered with an error (out of memory, a read-only replica mid-failover, a script
    error the caller did not map itself), "redis unreachable" otherwise.

    Raise it ``from exc``: ``raise redis_unavailable(exc, IndexUnavailable) from exc``.
    """
    if isinstance(exc, ResponseError):
        return failure(f"redis refused a command: {exc}")
    return failure(f"redis unreachable: {exc!r}")
