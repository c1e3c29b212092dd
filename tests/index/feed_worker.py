"""A minimal sync loop run in a subprocess by the crash tests, to be killed with SIGKILL.

``python -m tests.index.feed_worker REDIS_URL`` loads the initial snapshot when the
index is not ready, then applies the synthetic feed page by page until its end.
"""

from __future__ import annotations

import random
import sys

from verifier.index import ChangeEvent, IndexWriter
from verifier.index.records import Card, PermitRecord
from verifier.lib.redis_client import sync_client

PERMITS = 300
EVENTS = 6000
PAGE = 20
FEED_ID = "crash-feed"


def initial_records() -> list[PermitRecord]:
    return [
        PermitRecord(pn=f"WP{i:06d}", n=f"N{i}", nat="FRA", dob="1990-01-01", cat="A",
                     emp="91310000MA1FL0000X", vf="2024-01-01", vt="2028-01-01", v=1,
                     ssn=f"S{i:06d}", cards=(Card(f"C{i:06d}-0", "active"),))
        for i in range(PERMITS)
    ]


def feed() -> list[ChangeEvent]:
    """A deterministic feed: version bumps, cancellations, ssn changes, lost and replaced cards."""
    rng = random.Random(20241201)
    current = {r.pn: r for r in initial_records()}
    events = []
    for seq in range(1, EVENTS + 1):
        record = current[f"WP{rng.randrange(PERMITS):06d}"]
        roll = rng.random()
        cards = list(record.cards)
        changes: dict[str, object] = {"v": record.v + 1}
        if roll < 0.1:
            changes["status"] = "cancelled"
        elif roll < 0.25:
            changes["ssn"] = f"S{rng.randrange(10**6):06d}x{seq}"
        elif roll < 0.45 and cards:
            active = [c for c in cards if c.status == "active"]
            if active:
                kind = "lost" if rng.random() < 0.5 else "replaced"
                cards = [Card(c.cn, kind) if c.cn == active[0].cn else c for c in cards]
            cards.append(Card(f"{record.pn[2:]}-{seq}", "active"))
            changes["cards"] = tuple(cards)
        else:
            changes["emp"] = f"91310000MA{seq:08d}"
        new = msgspec_replace(record, **changes)
        current[new.pn] = new
        events.append(ChangeEvent(seq=seq, time=1_700_000_000.0 + seq, type="change", permit=new))
    return events


def msgspec_replace(record: PermitRecord, **changes: object) -> PermitRecord:
    import msgspec

    return msgspec.structs.replace(record, **changes)


def final_records() -> dict[str, PermitRecord]:
    final = {r.pn: r for r in initial_records()}
    for e in feed():
        if e.permit.v > final[e.permit.pn].v:
            final[e.permit.pn] = e.permit
    return final


def main(url: str) -> int:
    writer = IndexWriter(sync_client(url))
    fence = writer.acquire_leadership("crash-worker", ttl_s=120)  # re-entrant after a kill
    assert fence is not None
    events = feed()
    state = writer.state()
    if not state.ready:
        load = writer.begin_snapshot(fence, expected_count=PERMITS)
        records = initial_records()
        for start in range(0, PERMITS, 50):  # several batches: a kill may land between them
            load.add(records[start:start + 50])
            print("batch", flush=True)
        print("loaded", flush=True)
        load.commit(0, FEED_ID)
        state = writer.state()
    cursor = state.seq
    while cursor < EVENTS:
        page = [e for e in events if e.seq > cursor][:PAGE]
        cursor = writer.apply_page(page, cursor_before=cursor, fence=fence).cursor
        print(cursor, flush=True)  # progress, so the test can kill mid-feed
    print("done", cursor, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
