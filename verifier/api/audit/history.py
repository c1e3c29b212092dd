"""The per-permit index of the audit: "who verified me", written with the audit itself.

Every audit record that names a permit (a scan, a card read, a manual check, a
look-up, a holder's sign-in or real-name match) also becomes an entry of that
permit's index, in the same Lua call that appends the record's batch to the audit
stream (``APPEND``, verifier/api/audit/stream.py, which runs :data:`INDEX_BODY` for a
batch it took): one call per stream entry, in the audit's own pipelines, so the index
costs the worker no more commands than the audit did; the work is Redis's. A batch
sent again (the audit is delivered effectively once) is neither appended nor indexed
twice. A bulk look-up's record names up to 10,000
permits: each gets an entry; records naming more than :data:`INDEX_CHUNK` permits are
indexed by further calls of at most that many in the same pipeline (:data:`INDEX`), so
no one call holds Redis for long. The holder's own reads through the e-card platform
(kinds ``holder_*``) are audited but not indexed: they are not checks by others.

Layout: ``{pv:audit}:p:<permit number>``, a sorted set per permit, scored by the
record's time (epoch ms), members ``<t>|<key id>|<terminal>|<kind>|<profile>|<result>``
(a record written twice by an at-least-once flush is one entry). The hash tag puts
every permit's index in the audit stream's own slot (``{pv:audit}`` hashes like the
key ``pv:audit``): on a Cluster the Lua call's keys are on one node, the audit's; the
index moves with the audit wherever the audit goes. A sorted set of up to 128 entries
is a listpack in Redis (~65-75 bytes an entry, measured); more become a skiplist
(~170 bytes an entry).

Retention (``retention_ms``, 12 months by default) and cap (``cap`` entries, 10,000
by default):

- a read shows only entries younger than the retention, at most ``cap`` of them, and
  first trims the permit's set to exactly that;
- every write renews the permit's expiry to the retention (a permit nobody checked
  for 12 months loses its index whole); one write in :data:`TRIM_EVERY` (by the
  record's time) also trims the set by age and cap, so a permit's set holds at most
  about ``cap`` entries and none much older than the retention. (Trimming on every
  write cost 40 % more Redis time per entry: a bulk look-up of 1,000 permits is 1,000
  writes.)

Names (organisation, terminal) are not stored: the key id and terminal id are, and
are resolved when read (verifier/api/holder), so a renamed terminal shows its new
name and an entry costs ~45 bytes instead of two names of up to 200.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from verifier.lib.redis_client import AsyncRedisClient

__all__ = [
    "HISTORY_PREFIX",
    "INDEX",
    "INDEX_CHUNK",
    "READ",
    "INDEX_BODY",
    "TRIM_EVERY",
    "Cursor",
    "CursorError",
    "HistoryEntry",
    "HistoryPolicy",
    "history_key",
    "read_history",
]

HISTORY_PREFIX = "{pv:audit}:p:"
INDEX_CHUNK = 1000
"""At most this many permits are indexed by one Lua call (~3 ms of Redis)."""
TRIM_EVERY = 8

# Shared: index the records of a decoded batch ``records``, with the locals ``retention``
# (ms), ``cap`` and ``skip`` (",<i>,<j>," 1-based records not to index here: their permits
# come in INDEX calls; or "") set by the script around it; counts into ``indexed``.
INDEX_BODY = """
local clock = redis.call('TIME')
local cutoff = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) - retention
local indexed = 0
for i, rec in ipairs(records) do
  local pns = rec.pn
  local kind = rec.kind or ''
  if type(pns) == 'string' and pns ~= '' and string.sub(kind, 1, 7) ~= 'holder_'
     and (skip == '' or not string.find(skip, ',' .. i .. ',', 1, true)) then
    local t = tonumber(rec.t) or 0
    local result = rec.result or ''
    if kind == 'lookup' then result = 'found' end  -- the record's result counts the whole look-up
    local member = string.format('%d', t) .. '|' .. (rec.key or '') .. '|' .. (rec.terminal or '') .. '|'
      .. kind .. '|' .. (rec.profile or '') .. '|' .. result
    local trim = (t % TRIM_EVERY) == 0
    for pn in string.gmatch(pns, '[^,]+') do
      local key = 'PREFIX' .. pn
      redis.call('ZADD', key, t, member)
      if trim then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
        redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
      end
      redis.call('PEXPIRE', key, retention)
      indexed = indexed + 1
    end
  end
end
""".replace("PREFIX", HISTORY_PREFIX).replace("TRIM_EVERY", str(TRIM_EVERY))
"""The indexing part of the audit's APPEND script (verifier/api/audit/stream.py), which runs it
for a batch the stream took, and of :data:`INDEX`."""

INDEX = """
local seq = redis.call('HGET', KEYS[2], 'seq')
if not seq or tonumber(seq) < tonumber(ARGV[5]) then return 0 end
local records = cjson.decode(ARGV[1])
local retention, cap, skip = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
""" + INDEX_BODY + """
return indexed
"""
"""KEYS: the audit stream (for routing: the index is in its slot), the record's shard head.
ARGV: 1 a JSON array of records (chunks of one large record's permits), 2 retention ms,
3 cap, 4 "", 5 the large record's number in its shard. Indexes only if the stream took
that record (the APPEND before it in the pipeline did, now or earlier: ZADD of the same
member again changes nothing), so the index never runs ahead of the audit."""

READ = """
local retention = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local clock = redis.call('TIME')
local cutoff = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) - retention
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -cap - 1)
local low = math.max(tonumber(ARGV[3]), cutoff)
return redis.call('ZRANGE', KEYS[1], ARGV[4], low, 'BYSCORE', 'REV', 'LIMIT', ARGV[5], ARGV[6], 'WITHSCORES')
"""
"""KEYS[1] a permit's index. ARGV: 1 retention ms, 2 cap, 3 since (ms), 4 the highest
score to read (``+inf`` or a cursor's), 5 how many entries of that score to pass over,
6 how many to read. Trims the set to the retention and cap, then reads newest first."""


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How long and how much "who verified me" keeps (settings.holder_history_*)."""

    retention_ms: int = 365 * 86_400_000
    cap: int = 10_000

    @classmethod
    def of(cls, days: int, cap: int) -> "HistoryPolicy":
        if days < 1 or cap < 1:
            raise ValueError("the holder history needs at least one day and one entry")
        return cls(retention_ms=days * 86_400_000, cap=cap)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One check of a permit, as stored (ids, not names)."""

    time_ms: int
    key_id: str
    terminal: str
    kind: str
    profile: str
    result: str

    @classmethod
    def parse(cls, member: bytes | str) -> "HistoryEntry":
        text = member.decode() if isinstance(member, bytes) else member
        t, key_id, terminal, kind, profile, result = text.split("|", 5)
        return cls(int(t), key_id, terminal, kind, profile, result)


class CursorError(ValueError):
    """A cursor that is not one of ours, or (``foreign``) that pages another permit's index."""

    def __init__(self, message: str, *, foreign: bool = False) -> None:
        super().__init__(message)
        self.foreign = foreign


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: entries scored at most ``score``, passing over the
    first ``skip`` of those scored exactly ``score`` (they were on the last page).

    Opaque to clients: base64url of ``1.<permit tag>.<score>.<skip>``; the permit tag
    ties it to the index it pages, so another holder's cursor is refused."""

    score: int
    skip: int

    def encode(self, permit_number: str) -> str:
        text = f"1.{_tag(permit_number)}.{self.score}.{self.skip}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, permit_number: str) -> "Cursor":
        if not token or len(token) > 128:
            raise CursorError("not a cursor of this list")
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
            version, tag, score, skip = text.split(".")
            cursor = cls(int(score), int(skip))
        except (ValueError, UnicodeDecodeError):
            raise CursorError("not a cursor of this list") from None
        if version != "1" or cursor.skip < 0 or cursor.score < 0:
            raise CursorError("not a cursor of this list")
        if tag != _tag(permit_number):
            raise CursorError("this cursor pages another holder's list", foreign=True)
        return cursor


def _tag(permit_number: str) -> str:
    return hashlib.sha256(b"pv-history-cursor:" + permit_number.encode()).hexdigest()[:12]


def history_key(permit_number: str) -> str:
    return HISTORY_PREFIX + permit_number


async def read_history(
    redis: AsyncRedisClient, permit_number: str, policy: HistoryPolicy, *, since_ms: int, cursor: Cursor | None, limit: int
) -> tuple[list[HistoryEntry], Cursor | None]:
    """A page of the permit's checks, newest first, from ``since_ms`` on; and the cursor of
    the next page (None: this was the last)."""
    top = "+inf" if cursor is None else str(cursor.score)
    skip = 0 if cursor is None else cursor.skip
    reply = await redis.eval(READ, 1, history_key(permit_number),
                             policy.retention_ms, policy.cap, since_ms, top, skip, limit + 1)
    pairs = [(reply[i], int(float(reply[i + 1]))) for i in range(0, len(reply), 2)]
    entries = [HistoryEntry.parse(member) for member, _score in pairs[:limit]]
    if len(pairs) <= limit:
        return entries, None
    last = pairs[limit - 1][1]
    same = sum(1 for _member, score in pairs[:limit] if score == last)
    if cursor is not None and last == cursor.score:
        same += cursor.skip
    return entries, Cursor(last, same)
