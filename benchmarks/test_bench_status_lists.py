"""Status List benchmarks (WIRE-FORMAT 8): size, build and sign, load, offline verify.

    python3 -m pytest benchmarks/test_bench_status_lists.py -p no:cacheprovider -s

Writes ``benchmarks/results/status_lists.json``. Method (one run, one machine; every
ratio compares two subjects of this run, timed in alternating rounds, median and
minimum of the rounds; ``time.perf_counter``):

- Size of the ``permits`` list for 1,000,000 permits with 1% cancelled (10,000 at
  random entries, seeded), as the writer compresses it (zlib level 9, run-length
  strategy), beside zlib's default and level 9 with its default strategy; and the
  lists of 1,000,000 permits of the simulator's shapes (``index_support``: 4%
  cancelled, cards lost and replaced). Target: <= 20 KB.
- Build and sign a 1,000,000-entry list: what the writer does each time it publishes
  (pack the entries held one byte each into the bit array, pad, compress, make the
  CWT, sign). Anchor: a bare ``zlib.compress`` of the same bit array. Target: <= 100 ms.
- Load a 1,000,000-entry list: ``fastpath.verify_status_list`` (COSE, signature,
  claims, the bounded inflate). Anchor: a bare ``zlib.decompress`` of its ``lst``.
  Target: <= 50 ms. Also the whole bundle file read back (``OfflineBundle.from_bytes``).
- The index's memory for the two entries (``si``, ``ci``): ``used_memory`` of 1,000,000
  records of the simulator's shapes (``index_support``) loaded with ``IndexWriter``, with
  and without them (``test_index_memory_of_the_entries``; target of the index <= 400 MB).
- Offline verify of a WP1 code with its status claim (``OfflineVerifier.verify_qr``,
  cache off) against the online hot path's cold verify (``fastpath.verify_qr``, cache
  off) of the same code, compiled twin. Target: <= 1.1x.

Caveat: 2 shared cores; figures move by +-15% between runs, the minima less.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastpath
from fastpath.offline import OfflineBundle, OfflineVerifier
from verifier.index.status_lists import CARDS, PERMITS
from verifier.issuing.keys import IssuerKey, KeyRing, trust_list
from verifier.issuing.mint import mint_wp1
from verifier.status_lists import keys as signing_keys
from verifier.status_lists.bits import StatusArray
from verifier.status_lists.entries import ListEntries
from verifier.status_lists.token import compress, status_list_token

from conftest import PERMIT
from index_support import synthetic_records

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "status_lists.json"
MEMORY_OUT = HERE / "results" / "status_lists_memory.json"
ENTRIES = 1_000_000
BASE = "https://pv.example/v1/status-lists"


def rounds(subjects: dict[str, Callable[[], Any]], repeat: int, number: int = 1) -> dict[str, dict[str, float]]:
    """Each subject ``number`` times per round, the subjects in turn, ``repeat`` rounds: seconds per call."""
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(repeat):
        for name, call in subjects.items():
            started = time.perf_counter()
            for _ in range(number):
                call()
            times[name].append((time.perf_counter() - started) / number)
    return {name: {"median_s": statistics.median(t), "min_s": min(t)} for name, t in times.items()}


def one_percent_cancelled() -> StatusArray:
    array = StatusArray(2, bytes(ENTRIES))
    for i in random.Random(14).sample(range(ENTRIES), ENTRIES // 100):
        array.values[i] = 1
    return array


def test_status_lists() -> None:
    signer = IssuerKey.generate([BASE])
    trust = fastpath.TrustList.from_jwks(signing_keys.public_jwks(KeyRing([signer])))
    now = int(time.time())
    results: dict[str, Any] = {"about": {
        "command": "python3 -m pytest benchmarks/test_bench_status_lists.py -p no:cacheprovider -s",
        "machine": platform.machine(), "python": platform.python_version(), "fastpath": fastpath.IMPLEMENTATION,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }}

    # --- size -----------------------------------------------------------------------
    array = one_percent_cancelled()
    bit_array = array.packed()
    token = status_list_token(signer, sub=f"{BASE}/permits", bits=2, bit_array=bit_array, iat=now, exp=now + 3600,
                              ttl=300)
    results["size_1m_permits_1pct"] = {
        "entries": ENTRIES, "cancelled": ENTRIES // 100, "bit_array_bytes": len(bit_array),
        "lst_bytes": len(compress(bit_array)), "token_bytes": len(token),
        "zlib_default_bytes": len(zlib.compress(bit_array)), "zlib_9_default_strategy_bytes": len(zlib.compress(bit_array, 9)),
        "target": "token <= 20,000 bytes",
    }
    simulated = ListEntries.build(synthetic_records(ENTRIES))
    results["size_1m_permits_simulator_shapes"] = {
        name: {"entries": len(simulated.array(name)), "token_bytes": len(status_list_token(
            signer, sub=f"{BASE}/{name}", bits=simulated.array(name).bits, bit_array=simulated.array(name).packed(),
            iat=now, exp=now + 3600, ttl=300))}
        for name in (PERMITS, CARDS)
    }
    results["size_1m_permits_simulator_shapes"]["note"] = "4% cancelled; cards: ~2 entries a permit, ~14% not valid"

    # --- build and sign -----------------------------------------------------------------
    def build() -> bytes:
        return status_list_token(signer, sub=f"{BASE}/permits", bits=2, bit_array=array.packed(), iat=now,
                                 exp=now + 3600, ttl=300)

    timed = rounds({"anchor_zlib_compress": lambda: zlib.compress(bit_array), "build_and_sign": build}, repeat=15)
    results["build_and_sign_1m"] = {
        **timed, "ratio_median": timed["build_and_sign"]["median_s"] / timed["anchor_zlib_compress"]["median_s"],
        "target": "build_and_sign <= 0.100 s",
        "pack_alone": rounds({"pack": array.packed}, repeat=15)["pack"],
    }

    # --- load ---------------------------------------------------------------------------
    lst = compress(bit_array)
    bundle = OfflineBundle.from_parts(signing_keys.public_jwks(KeyRing([signer])), {PERMITS: token}, now=now)
    bundle_file = bundle.to_bytes()
    timed = rounds({
        "anchor_zlib_decompress": lambda: zlib.decompress(lst),
        "verify_status_list": lambda: fastpath.verify_status_list(token, trust, now),
        "bundle_from_bytes": lambda: OfflineBundle.from_bytes(bundle_file, now=now),
    }, repeat=15)
    results["load_1m"] = {
        **timed, "ratio_median": timed["verify_status_list"]["median_s"] / timed["anchor_zlib_decompress"]["median_s"],
        "bundle_file_bytes": len(bundle_file), "target": "verify_status_list <= 0.050 s",
    }

    # --- offline verify against the cold online verify --------------------------------------
    issuer = IssuerKey.generate(["CN-310000"])
    jwks = {"keys": trust_list([issuer])["keys"] + json.loads(signing_keys.public_jwks(KeyRing([signer])))["keys"]}
    offline = OfflineVerifier(OfflineBundle.from_parts(jwks, {PERMITS: token}, now=now))
    code = mint_wp1(issuer, PERMIT, iat=now - 60, status=(f"{BASE}/permits", 123_456))
    online_trust = offline.bundle.trust
    assert offline.verify_qr(code, now, cache=False).result in ("VALID", "PERMIT_CANCELLED")
    timed = rounds({
        "cold_verify_qr": lambda: fastpath.verify_qr(code, online_trust, now, cache=False),
        "offline_verify_qr": lambda: offline.verify_qr(code, now, cache=False),
    }, repeat=21, number=500)
    results["offline_verify_wp1"] = {
        **timed,
        "ratio_median": timed["offline_verify_qr"]["median_s"] / timed["cold_verify_qr"]["median_s"],
        "ratio_min": timed["offline_verify_qr"]["min_s"] / timed["cold_verify_qr"]["min_s"],
        "code_chars": len(code), "target": "<= 1.1",
    }

    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    size = results["size_1m_permits_1pct"]
    build_time = results["build_and_sign_1m"]
    load = results["load_1m"]
    verify = results["offline_verify_wp1"]
    print(f"\npermits list, 1M entries, 1% cancelled: token {size['token_bytes']} B (lst {size['lst_bytes']} B; "
          f"zlib default {size['zlib_default_bytes']} B, level 9 {size['zlib_9_default_strategy_bytes']} B)")
    print(f"simulator shapes, 1M permits: {results['size_1m_permits_simulator_shapes']}")
    print(f"build and sign: {build_time['build_and_sign']['median_s'] * 1e3:.1f} ms median "
          f"({build_time['build_and_sign']['min_s'] * 1e3:.1f} min), bare zlib.compress "
          f"{build_time['anchor_zlib_compress']['median_s'] * 1e3:.1f} ms: {build_time['ratio_median']:.2f}x")
    print(f"load: verify_status_list {load['verify_status_list']['median_s'] * 1e3:.2f} ms median, "
          f"bare zlib.decompress {load['anchor_zlib_decompress']['median_s'] * 1e3:.2f} ms: "
          f"{load['ratio_median']:.2f}x; the bundle file {load['bundle_from_bytes']['median_s'] * 1e3:.2f} ms")
    print(f"offline verify {verify['offline_verify_qr']['median_s'] * 1e6:.1f} us, cold verify_qr "
          f"{verify['cold_verify_qr']['median_s'] * 1e6:.1f} us: {verify['ratio_median']:.3f}x median, "
          f"{verify['ratio_min']:.3f}x min")
    # figures, not assertions: the machine is shared (see README "Performance")


def test_index_memory_of_the_entries(tmp_path: Path) -> None:
    import msgspec

    from index_support import settle
    from verifier.index import IndexWriter
    from verifier.lib.redis_client import sync_client
    from verifier.lib.redis_server import EmbeddedRedis

    records = synthetic_records(ENTRIES)
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    client = sync_client(server.url)
    used: dict[str, int] = {}
    try:
        for name, batch in (("without", [msgspec.structs.replace(r, si=None, ci=None) for r in records]),
                            ("with", records)):
            client.flushall()
            empty = settle(client)
            writer = IndexWriter(client)
            fence = writer.acquire_leadership("bench", 600)
            assert fence is not None
            load = writer.begin_snapshot(fence, expected_count=ENTRIES)
            for start in range(0, ENTRIES, 10_000):
                load.add(batch[start:start + 10_000])
            load.commit(1, "bench")
            used[name] = settle(client) - empty
    finally:
        client.close()
        server.stop()
    result = {"permits": ENTRIES, "used_memory_without_entries": used["without"],
              "used_memory_with_entries": used["with"],
              "bytes_per_permit": (used["with"] - used["without"]) / ENTRIES, "target": "index <= 400 MB",
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    MEMORY_OUT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\nindex used_memory, {ENTRIES} permits: {used['without'] / 1e6:.1f} MB without si/ci, "
          f"{used['with'] / 1e6:.1f} MB with ({result['bytes_per_permit']:.1f} bytes a permit)")
