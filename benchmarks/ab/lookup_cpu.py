"""CPU of a bulk look-up of 10,000 ids (client + Redis) against a bare MGET, for A/B runs of two trees.

    python benchmarks/ab/lookup_cpu.py serve > url.txt &     # loads N permits twice: namespace pv with
                                                              # ids as bucket fields (the older layout), ph with crc32 fields
    python benchmarks/ab/lookup_cpu.py measure pv             # this tree, on the older layout
    python benchmarks/ab/lookup_cpu.py measure ph             # this tree, crc32 fields
    PYTHONPATH=/tmp/main-tree python benchmarks/ab/lookup_cpu.py measure pv   # main's code

Alternate the measuring runs (four rounds): CPU times of interleaved runs compare on a
shared machine, wall clock does not. Prints per kind (mget anchor, pn, ssn, cn) the
client CPU, Redis CPU and wall median per call, in ms, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from index_support import synthetic_record, synthetic_records  # noqa: E402

from verifier.index import IndexWriter, PermitIndex  # noqa: E402
from verifier.index.keys import KeyLayout, Pointer  # noqa: E402
from verifier.lib.redis_client import async_client, sync_client  # noqa: E402
from verifier.lib.redis_server import EmbeddedRedis  # noqa: E402

N = int(os.environ.get("N", "500000"))
URL_FILE = Path(os.environ.get("AB_URL_FILE", "/tmp/lookup_cpu.url"))


def serve() -> None:
    server = EmbeddedRedis(Path(tempfile.mkdtemp()), persist=False).start()
    client = sync_client(server.url)
    records = synthetic_records(N)
    for namespace, hashed in (("pv", False), ("ph", True)):
        writer = IndexWriter(client, namespace=namespace)
        fence = writer.acquire_leadership("ab", ttl_s=36_000)
        assert fence is not None
        load = writer.begin_snapshot(fence, expected_count=N)
        load.pointer = Pointer(load.generation, load.pointer.buckets, hashed=hashed)
        for start in range(0, N, 10_000):
            load.add(records[start:start + 10_000])
        load.commit(1, "feed")
    URL_FILE.write_text(server.url)
    print("ready", server.url, f"(remove {URL_FILE} to stop)", flush=True)
    try:
        while URL_FILE.exists():
            time.sleep(1)
    finally:
        server.stop()


def measure(namespace: str) -> None:
    url = URL_FILE.read_text()
    sync = sync_client(url)
    rng = random.Random(11)
    picked = [synthetic_record(i) for i in rng.sample(range(N), 20_000)]
    ids = {"pn": [r.pn for r in picked][:10_000], "ssn": [r.ssn for r in picked if r.ssn][:10_000],
           "cn": [r.cards[-1].cn for r in picked if r.cards][:10_000]}
    layout = KeyLayout(namespace)
    pointer = Pointer.parse(sync.get(layout.current))
    assert pointer is not None
    keys = [layout.record_prefix(pointer.generation) + pn.encode() for pn in ids["pn"]]
    loop = asyncio.new_event_loop()

    async def make() -> object:
        return async_client(url)

    client = loop.run_until_complete(make())
    index = PermitIndex(client, namespace=namespace)  # type: ignore[arg-type]

    def server_cpu() -> float:
        info = sync.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    out = {}
    for kind in ("mget", "pn", "ssn", "cn"):
        if kind == "mget":
            def run() -> int:
                return len(loop.run_until_complete(client.mget(keys)))  # type: ignore[attr-defined]
        else:
            def run(kind: str = kind) -> int:
                return len(loop.run_until_complete(index.get_many(kind, ids[kind])))  # type: ignore[arg-type]
        assert run() == 10_000, kind
        rounds = 12
        c0, s0, walls = time.process_time(), server_cpu(), []
        for _ in range(rounds):
            at = time.perf_counter()
            run()
            walls.append(time.perf_counter() - at)
        c1, s1 = time.process_time(), server_cpu()
        walls.sort()
        out[kind] = {"client_ms": (c1 - c0) / rounds * 1e3, "redis_ms": (s1 - s0) / rounds * 1e3,
                     "wall_median_ms": walls[rounds // 2] * 1e3}
    print(json.dumps({"namespace": namespace, **out}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["measure"] and len(sys.argv) == 3:
        measure(sys.argv[2])
    else:
        sys.exit(__doc__)
