"""CPU an event of ``IndexWriter.apply_page`` (client and Redis apart), for A/B runs of two trees.

    python benchmarks/ab/apply_cpu.py                      # this tree
    PYTHONPATH=/tmp/main-tree python benchmarks/ab/apply_cpu.py   # another one (git archive main | tar -x -C ...)

Run the two alternately (three rounds each): on a shared machine the CPU times of
interleaved runs compare, wall clock does not. ``N`` permits (default 200,000), pages
of 1,000 "change" events of random permits; prints events/s and CPU µs an event.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from index_support import synthetic_records  # noqa: E402

from verifier.index import ChangeEvent, IndexWriter  # noqa: E402
from verifier.lib.redis_client import sync_client  # noqa: E402
from verifier.lib.redis_server import EmbeddedRedis  # noqa: E402


def main() -> None:
    n = int(os.environ.get("N", "200000"))
    server = EmbeddedRedis(Path(tempfile.mkdtemp()), persist=False).start()
    try:
        client = sync_client(server.url)
        records = synthetic_records(n)
        gc.collect()
        gc.freeze()
        writer = IndexWriter(client)
        fence = writer.acquire_leadership("ab", ttl_s=3600)
        assert fence is not None
        load = writer.begin_snapshot(fence, expected_count=n)
        for start in range(0, n, 10_000):
            load.add(records[start:start + 10_000])
        load.commit(1, "feed")
        rng = random.Random(5)
        cursor = writer.state().seq
        pages = []
        for p in range(25):
            events = []
            for k in range(1000):
                r = records[rng.randrange(n)]
                events.append(ChangeEvent(seq=cursor + p * 1000 + k + 1, time=time.time(), type="change",
                                          permit=msgspec.structs.replace(r, v=r.v + 100 + p * 1000 + k)))
            pages.append(events)

        def server_cpu() -> float:
            info = client.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

        for events in pages[:5]:  # warm-up
            cursor = writer.apply_page(events, cursor_before=cursor, fence=fence).cursor
        c0, s0, t0 = time.process_time(), server_cpu(), time.perf_counter()
        for events in pages[5:]:
            cursor = writer.apply_page(events, cursor_before=cursor, fence=fence).cursor
        c1, s1, t1 = time.process_time(), server_cpu(), time.perf_counter()
        count = 20 * 1000
        print(f"events/s {count / (t1 - t0):.0f}  client cpu/event {(c1 - c0) / count * 1e6:.1f} us  "
              f"server cpu/event {(s1 - s0) / count * 1e6:.1f} us")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
