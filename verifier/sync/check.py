"""The operator's consistency check: does the index hold what the upstream holds?

Both sides keep moving (the upstream makes events, the sync job applies them), so
comparing "now" with "now" would report differences that are only changes in
flight. The check compares both sides at the same point of the feed instead:

1. Read the upstream's snapshot whole. It is consistent with one feed sequence
   number ``S`` of feed ``F``: every permit's state as of ``S``.
2. Wait until the index follows feed ``F`` with a cursor ``C1 >= S`` (the sync job
   is at or past ``S``). An index on another feed, or not ready, or that does not
   get there in time, is reported as not identical.
3. Walk every record of the index's live generation (SCAN + MGET); read the cursor
   again afterwards: ``C2``. The generation must be the same before and after (else
   start again). The index applies a page and its cursor atomically, so each
   record read shows the index as of some cursor ``c`` with ``C1 <= c <= C2``.
4. A record that equals the snapshot's is fine. For each one that does not (or that
   is only on one side), read the feed events ``S < seq <= C2`` of the upstream.
   The permit's correct state at cursor ``c`` is its last event with
   ``seq <= c``, or the snapshot's state if there is none. The index's record is
   accepted only if it equals the correct state at some ``c`` in ``[C1, C2]``: the
   state at ``C1``, or the permit of one of its events in ``(C1, C2]``. A record
   whose ``v`` is newer than the snapshot's because of events after ``S`` is thus
   no difference when the feed confirms exactly that record; anything else is.
   (Keys of a generation are never deleted, so every permit of the snapshot is seen
   by the walk; permits created after ``S`` may or may not be, and either is right.)
5. If the feed no longer holds the events after ``S`` (410) or was reset meanwhile,
   the check starts again from step 1 (a few attempts), and otherwise gives up
   with an error rather than a guess.

The answer is exact for the index at the cursors it was read at: a difference is
a record that no state of the upstream between ``C1`` and ``C2`` explains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from verifier.index.errors import IndexNotReady
from verifier.index.reader import SyncPermitIndex
from verifier.index.records import PermitRecord, encode_record
from verifier.index.writer import IndexWriter
from verifier.lib.progress import Bar
from verifier.lib.redis_client import SyncRedisClient
from verifier.sync.upstream_client import CursorTooOld, UpstreamClient, UpstreamError

log = logging.getLogger("verifier.index.check")

DifferenceKind = Literal["missing_in_index", "not_in_upstream", "differs"]


class Difference(msgspec.Struct, frozen=True):
    pn: str
    kind: DifferenceKind
    """missing_in_index (the upstream has it), not_in_upstream (only the index has it), differs."""
    fields: list[str]
    """The record fields that differ (``differs`` only)."""
    upstream_v: int | None
    index_v: int | None


class CheckReport(msgspec.Struct):
    identical: bool
    reason: str
    """One line for the operator."""
    feed_id: str | None = None
    snapshot_seq: int | None = None
    index_cursor_before: int | None = None
    index_cursor_after: int | None = None
    upstream_permits: int = 0
    index_permits: int = 0
    explained_by_feed: int = 0
    """Records that differ from the snapshot only by changes the feed confirms (after S)."""
    differences: list[Difference] = msgspec.field(default_factory=list)
    attempts: int = 1


class CheckError(Exception):
    """The comparison could not be made (upstream or Redis unusable)."""


class _Restart(Exception):
    """The ground moved (feed reset, window passed, generation switched): start over."""


def _fields_differ(a: PermitRecord, b: PermitRecord) -> list[str]:
    return [name for name in a.__struct_fields__ if getattr(a, name) != getattr(b, name)]


def check_index(
    redis_client: SyncRedisClient,
    upstream: UpstreamClient,
    *,
    namespace: str = "pv",
    wait_s: float = 60.0,
    attempts: int = 3,
    page_size: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckReport:
    """Compare the index with the upstream (see the module docstring). Raises CheckError
    when it cannot tell."""
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            report = _check_once(redis_client, upstream, namespace=namespace, wait_s=wait_s,
                                 page_size=page_size, sleep=sleep)
            report.attempts = attempt
            return report
        except _Restart as exc:
            log.info("index check: starting again: %s", exc)
            last = exc
    raise CheckError(f"the comparison kept being overtaken ({last}); try again")


def _check_once(redis_client: SyncRedisClient, upstream: UpstreamClient, *, namespace: str, wait_s: float,
                page_size: int, sleep: Callable[[float], None]) -> CheckReport:
    writer = IndexWriter(redis_client, namespace)  # read-only use: state()
    reader = SyncPermitIndex(redis_client, namespace)

    # 1. The upstream at S.
    try:
        response, stream = upstream.open_snapshot()
        try:
            header = stream.header
            snapshot: dict[str, bytes] = {}
            with Bar("index check: reading the upstream", header.count) as bar:
                for batch in stream.batches():
                    for record in batch:
                        snapshot[record.pn] = encode_record(record)
                    bar.update(len(snapshot))
        finally:
            response.close()
    except UpstreamError as exc:
        raise CheckError(f"could not read the upstream's snapshot: {exc}") from exc
    seq, feed_id = header.seq, header.feed_id
    report = CheckReport(identical=False, reason="", feed_id=feed_id, snapshot_seq=seq,
                         upstream_permits=len(snapshot))

    # 2. The index at or past S, on the same feed.
    deadline = time.monotonic() + wait_s
    while True:
        state = _state(writer)
        if state.ready and state.feed_id == feed_id and state.seq >= seq:
            break
        if time.monotonic() >= deadline:
            if not state.ready:
                report.reason = "the index is not ready (no complete generation)"
            elif state.feed_id != feed_id:
                report.reason = f"the index follows feed {state.feed_id}, the upstream's is {feed_id}"
            else:
                report.reason = (f"the index's cursor {state.seq} did not reach the snapshot's "
                                 f"sequence {seq} within {wait_s:.0f} s")
            report.index_cursor_before = state.seq if state.ready else None
            return report
        sleep(0.2)
    c1, generation = state.seq, state.generation
    report.index_cursor_before = c1

    # 3. Walk the index.
    mismatched: dict[str, PermitRecord | None] = {}
    seen: set[str] = set()
    try:
        with Bar("index check: walking the index", len(snapshot)) as bar:
            for record in reader.iter_records():
                if record.pn in seen:
                    continue  # SCAN may return a key twice
                seen.add(record.pn)
                if snapshot.get(record.pn) != encode_record(record):
                    mismatched[record.pn] = record
                if len(seen) % 1000 == 0:
                    bar.update(len(seen))
            bar.update(len(seen))
    except IndexNotReady as exc:
        raise _Restart(f"the index switched generations during the walk ({exc})") from None
    except Exception as exc:
        raise CheckError(f"could not read the index: {exc}") from exc
    for pn in snapshot.keys() - seen:
        mismatched[pn] = None
    after = _state(writer)
    if not after.ready or after.generation != generation or after.feed_id != feed_id:
        raise _Restart("the index was resynchronised during the walk")
    c2 = after.seq
    report.index_cursor_after = c2
    report.index_permits = len(seen)

    # 4. Explain what differs by the feed between S and C2, or report it.
    history = _history(upstream, feed_id, seq, c2, set(mismatched), page_size) if mismatched else {}
    for pn, held in sorted(mismatched.items()):
        at_s = snapshot.get(pn)
        upstream_at_s = msgspec.msgpack.decode(at_s, type=PermitRecord) if at_s is not None else None
        events = history.get(pn, [])
        state_at_c1 = upstream_at_s
        acceptable: list[PermitRecord | None] = []
        for event_seq, permit in events:
            if event_seq <= c1:
                state_at_c1 = permit
            else:
                acceptable.append(permit)
        acceptable.append(state_at_c1)
        if any(held == candidate for candidate in acceptable):
            report.explained_by_feed += 1
            continue
        latest = events[-1][1] if events else upstream_at_s
        if held is None:
            report.differences.append(Difference(pn, "missing_in_index", [], latest.v if latest else None, None))
        elif latest is None:
            report.differences.append(Difference(pn, "not_in_upstream", [], None, held.v))
        else:
            report.differences.append(
                Difference(pn, "differs", _fields_differ(latest, held), latest.v, held.v)
            )
    report.identical = not report.differences
    report.reason = (
        "identical" if report.identical else f"{len(report.differences)} permit(s) differ"
    )
    return report


def _state(writer: IndexWriter) -> Any:
    try:
        return writer.state()
    except Exception as exc:
        raise CheckError(f"could not read the index state: {exc}") from exc


def _history(upstream: UpstreamClient, feed_id: str, start: int, stop: int, pns: set[str],
             page_size: int) -> dict[str, list[tuple[int, PermitRecord]]]:
    """The feed's events ``start < seq <= stop`` for the permits in ``pns``, in order."""
    history: dict[str, list[tuple[int, PermitRecord]]] = {}
    cursor = start
    while cursor < stop:
        try:
            page = upstream.feed(cursor, min(page_size, stop - cursor))
        except CursorTooOld:
            raise _Restart(f"the feed no longer holds the events after {start}") from None
        except UpstreamError as exc:
            raise CheckError(f"could not read the upstream's feed: {exc}") from exc
        if page.feed_id != feed_id:
            raise _Restart("the upstream's feed was reset during the check")
        if not page.events:
            raise CheckError(f"the feed ends at {page.page_end}, before the index's cursor {stop}")
        for event in page.events:
            if event.seq > stop:
                break
            if event.permit.pn in pns:
                history.setdefault(event.permit.pn, []).append((event.seq, event.permit))
        cursor = page.page_end
    return history
