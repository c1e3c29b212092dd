"""Helpers of the index benchmarks: synthetic permits, the anchors, memory figures.

The generator is deterministic and quick (no upstream simulator needed) and mimics
the simulator's shapes: 18-character permit numbers, 19-character social security
numbers on ~90% of permits, 15-character card numbers, ~15% of card holders with a
second (lost or replaced) card, ~4% cancelled; each with its Status List entries
(``si``, ``ci``), as the upstream assigns them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from verifier.index.records import Card, PermitRecord
from verifier.index.stored import encode_stored

_NATIONS = ("USA", "GBR", "DEU", "FRA", "JPN", "KOR", "CAN", "AUS", "RUS", "IND", "ITA", "ESP")
_SURNAMES = ("SMITH", "MUELLER", "DUBOIS", "TANAKA", "KIM", "BROWN", "ROSSI", "GARCIA", "IVANOV")
_GIVEN = ("JOHN", "ANNA", "PIERRE", "YUKI", "MIN-JUN", "EMMA", "LUCA", "SOFIA", "DMITRY")
_REGIONS = ("310000", "110000", "440300", "320500", "330100", "510100")


def synthetic_record(i: int) -> PermitRecord:
    h = (i * 2654435761) & 0xFFFFFFFF
    region = _REGIONS[h % len(_REGIONS)]
    year = 2015 + h % 10
    ssn = f"9{region}{1960 + h % 40:04d}{i:08d}" if h % 10 else None
    cards: tuple[Card, ...] = ()
    if ssn is not None:
        first = f"S{region}{2 * i:08d}"
        if h % 7 == 0:
            cards = (Card(first, "replaced" if h % 2 else "lost"), Card(f"S{region}{2 * i + 1:08d}", "active"))
        else:
            cards = (Card(first, "active"),)
    return PermitRecord(
        pn=f"WP{region}{year:04d}{i:06d}",
        n=f"{_SURNAMES[h % 9]}, {_GIVEN[(h >> 4) % 9]}",
        nat=_NATIONS[(h >> 8) % len(_NATIONS)],
        dob=f"{1960 + h % 40:04d}-{1 + h % 12:02d}-{1 + h % 28:02d}",
        cat="ABC"[(h >> 12) % 3],  # type: ignore[arg-type]
        emp=f"91{region[:4]}MA{h % 10**10:010d}X",
        vf=f"{year + 1:04d}-03-01",
        vt=f"{year + 3:04d}-02-28",
        v=1 + h % 5,
        status="cancelled" if h % 25 == 0 else "active",
        ssn=ssn,
        cards=cards,
        si=i,  # WIRE-FORMAT 8: the Status List entries, as the upstream assigns them
        ci=2 * i + len(cards) - 1 if cards else None,
    )


def synthetic_records(count: int) -> list[PermitRecord]:
    return [synthetic_record(i) for i in range(count)]


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def settle(client: Any) -> int:
    """used_memory once lazy frees (UNLINK, FLUSHALL ASYNC) are done."""
    for _ in range(200):
        if int(client.info("memory").get("lazyfree_pending_objects", 0)) == 0:
            break
        time.sleep(0.05)
    gc.collect()
    return used_memory(client)


def bare_pipelined_set(client: Any, items: Iterator[tuple[bytes, bytes]], per_pipeline: int = 1000) -> int:
    """The anchor: one SET per record, ``per_pipeline`` commands per round trip."""
    pipe = client.pipeline(transaction=False)
    queued = done = 0
    for key, value in items:
        pipe.set(key, value)
        queued += 1
        if queued == per_pipeline:
            pipe.execute()
            done += queued
            queued = 0
    if queued:
        pipe.execute()
        done += queued
    return done


def three_plain_keys(client: Any, records: list[PermitRecord], per_pipeline: int = 1000) -> None:
    """The memory baseline: the record, ssn -> pn and cn -> pn, each a plain key."""
    pipe = client.pipeline(transaction=False)
    queued = 0
    for record in records:
        pn = record.pn.encode()
        pipe.set(b"pv:p:" + pn, encode_stored(record))
        if record.ssn:
            pipe.set(b"pv:s:" + record.ssn.encode(), pn)
        for card in record.cards:
            pipe.set(b"pv:c:" + card.cn.encode(), pn)
        queued += 1
        if queued == per_pipeline:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()
