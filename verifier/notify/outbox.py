"""The outbox: messages waiting for delivery, in Redis Streams of the store of record.

Each subscription has ``partitions`` streams (``{pvn}:ob:<sub>:<p>``, consumer group
``dispatch``); a message goes to partition ``crc32(permit number) mod partitions``,
so all messages about one permit for one subscription are in one stream, in order.
One notifier at a time delivers a partition (it holds the partition's lease), in
order per permit and in parallel across permits; it acknowledges a message (XACK and
XDEL) only once the receiver answered 2xx, and only then sends the next message of
that permit. A notifier killed with -9 leaves its messages pending in the group; the
next owner of the partition claims them (XAUTOCLAIM) and sends them again: at least
once, never out of order.

Writes that must not happen twice are single scripts here, fenced and compare-and-set
on a cursor (:data:`ENQUEUE`): the fan-out's messages and its cursor in the change
stream, a reminder and its "sent" mark, an audit batch and its cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .store import GROUP, StoreKeys, partition_of

__all__ = ["ENQUEUE", "FAILED", "Enqueue", "Message"]


@dataclass(slots=True)
class Message:
    """One message for one subscription (an outbox entry, or one about to be)."""

    sub: str
    key: str
    """The ordering key: the permit number (messages of one key go out in order)."""
    webhook_id: str
    type: str
    body: bytes
    enqueued_ms: int
    """When it was first queued: the retry window counts from here."""
    partition: int = 0
    entry_id: str = ""
    """Its outbox entry id once read back."""
    attempts: int = 0
    next_ms: int = 0
    """Not before this time (a retry's back-off)."""
    event_time: float = 0.0
    """The event's own time (epoch s; for the delivery-latency metric)."""

    def fields(self) -> list[Any]:
        return [self.webhook_id, self.type, self.key, self.body, self.enqueued_ms, repr(self.event_time)]

    @classmethod
    def from_entry(cls, sub: str, partition: int, entry_id: Any, raw: dict[Any, Any]) -> "Message | None":
        """None for an entry deleted under its pending id (XREADGROUP gives it without fields)."""
        if not raw:
            return None
        f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}

        def text(name: str) -> str:
            value = f.get(name, b"")
            return value.decode() if isinstance(value, bytes) else str(value)

        return cls(sub=sub, key=text("k"), webhook_id=text("i"), type=text("y"), body=bytes(f.get("b", b"")),
                   enqueued_ms=int(text("e") or 0), partition=partition,
                   entry_id=entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id),
                   event_time=float(text("t") or 0.0))


# KEYS: 1 leader lock, 2 cursors hash, 3.. the streams and hashes named by index below.
# ARGV: 1 fence ('' = unfenced), 2 cursor field ('' = none), 3 its expected value ('' = unset),
#       4 its new value, 5 n messages, 6 m marks, 7 consumer group,
#       then n messages (key index, webhook id, type, ordering key, body, enqueued ms, event time),
#       then m marks (key index, field, value): HSETs made with the messages.
# Refuses (before any write) a stale fence and a cursor that moved: whatever it writes,
# it writes once. Creates a stream's consumer group with the stream.
ENQUEUE = """
if ARGV[1] ~= '' then
  local lock = redis.call('GET', KEYS[1])
  if not lock or string.match(lock, '^(%d+):') ~= ARGV[1] then
    return redis.error_reply('STALE_FENCE the notifier leader lock is not held with this fence')
  end
end
if ARGV[2] ~= '' then
  local held = redis.call('HGET', KEYS[2], ARGV[2]) or ''
  if held ~= ARGV[3] then return redis.error_reply('CURSOR_MOVED ' .. held) end
end
local n = tonumber(ARGV[5])
local m = tonumber(ARGV[6])
local ready = {}
local a = 7
for i = 1, n do
  local key = KEYS[tonumber(ARGV[a + 1])]
  if not ready[key] then
    if redis.call('EXISTS', key) == 0 then redis.call('XGROUP', 'CREATE', key, ARGV[7], '0', 'MKSTREAM') end
    ready[key] = true
  end
  redis.call('XADD', key, '*', 'i', ARGV[a + 2], 'y', ARGV[a + 3], 'k', ARGV[a + 4], 'b', ARGV[a + 5],
             'e', ARGV[a + 6], 't', ARGV[a + 7])
  a = a + 7
end
for j = 1, m do
  redis.call('HSET', KEYS[tonumber(ARGV[a + 1])], ARGV[a + 2], ARGV[a + 3])
  a = a + 3
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[4]) end
return n
"""


@dataclass
class Enqueue:
    """One ENQUEUE call being built."""

    partitions: int
    fence: int | None = None
    cursor: str = ""
    expected: str = ""
    new: str = ""
    messages: list[Message] = field(default_factory=list)
    marks: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, message: Message) -> None:
        message.partition = partition_of(message.key, self.partitions)
        self.messages.append(message)

    def call(self) -> tuple[list[str], list[Any]]:
        keys = [StoreKeys.leader, StoreKeys.cursors]
        index: dict[str, int] = {}

        def key_index(name: str) -> int:
            if name not in index:
                keys.append(name)
                index[name] = len(keys)
            return index[name]

        args: list[Any] = ["" if self.fence is None else self.fence, self.cursor, self.expected, self.new,
                           len(self.messages), len(self.marks), GROUP]
        for message in self.messages:
            args.append(key_index(StoreKeys.outbox(message.sub, message.partition)))
            args += message.fields()
        for hash_key, name, value in self.marks:
            args += [key_index(hash_key), name, value]
        return keys, args


# KEYS: 1 the subscription, 2 the subscriptions' version counter. ARGV: 1 now ms, 2 error text, 3 failures to pause at,
# 4 ms of failing to pause after, 5 '1' to pause at once (410 Gone).
# Counts a failed attempt; pauses the endpoint when it has failed that often for that
# long. Returns 1 when it paused it now.
FAILED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
local since = tonumber(redis.call('HGET', KEYS[1], 'fail_since_ms') or '0') or 0
if since == 0 then
  since = tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'fail_since_ms', ARGV[1])
end
redis.call('HSET', KEYS[1], 'last_error', ARGV[2])
if redis.call('HGET', KEYS[1], 'status') == 'paused' then return 0 end
if ARGV[5] == '1' or (fails >= tonumber(ARGV[3]) and tonumber(ARGV[1]) - since >= tonumber(ARGV[4])) then
  redis.call('HSET', KEYS[1], 'status', 'paused', 'paused_reason', ARGV[2], 'paused_at_ms', ARGV[1])
  redis.call('INCR', KEYS[2])
  return 1
end
return 0
"""
