"""What "Redis cannot answer now" looks like from redis-py, in one place.

AttributeError is on the list on purpose (as in ``verifier.index.reader``): redis-py's
asyncio cluster client was seen raising "'NoneType' object has no attribute
'writelines'" for seconds after a primary died.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

REDIS_DOWN: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError, AttributeError)
