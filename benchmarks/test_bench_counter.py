"""Counter page benchmarks: wedge Enter → verdict on screen, camera frame decode, code in view → verdict.

    python3 -m pytest benchmarks/test_bench_counter.py -p no:cacheprovider -s

Writes ``benchmarks/results/counter.json``. Method (one run, one machine, headless
Debian Chromium through Playwright, the real service: ``verifier serve`` with one
worker on a private Redis, the page exactly as served):

- Wedge: SCANS fresh WP1 codes (each a cold verification), each put into the scanner
  field as one burst of text, then Enter. The page's own measure ``pv:check`` runs from
  the Enter key's event time to the second animation frame after the verdict was drawn
  (the frame that shows it has been painted). Beside it, in the same run and for the
  same request: the service's own time (``Server-Timing: app;dur``, the API's time
  to its first byte), the fetch's time in the page (request to parsed JSON), and when
  the verdict was in the DOM (drawn, not yet painted).
  Target: the page adds at most 50 ms at p95 over the API's own time.
- Camera: Chromium's fake camera plays a y4m video: 20 frames of an empty desk, then
  20 frames of a WP1 code, looped (30 frames/s). The page decodes with zxing-wasm
  (the path headless Chromium on Linux takes: it has no BarcodeDetector); ``pv:decode``
  measures each frame's decode (640×480). An observer script, added before the page's
  own, watches the same video element frame by frame (requestVideoFrameCallback) and
  marks the presentation time of the first frame showing the code; the latency is from
  that frame to the end of the following ``pv:check``. At least SCANS entries of the code.
  Target: a frame decodes in under 100 ms.

Caveat: a shared 2-core machine runs Chromium, the API and Redis; frame pacing in
headless Chromium adds up to two frames (~33 ms) to every "on screen" time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.api.conftest import ISSUER, PERMITS, make_world
from tests.browser.conftest import in_thread, launch, open_clerk, start_stack, stop_stack
from tests.browser.y4m import blank_luma, qr_luma, write_y4m
from verifier.issuing import IssuerKey
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "counter.json"
SCANS = int(os.environ.get("BENCH_COUNTER_SCANS", "60"))
RESULTS: dict[str, Any] = {}

# Marks the first presented frame that shows a code after frames that did not (the luma spread of a
# 32x24 thumbnail: an empty desk is flat, a QR code is black and white).
OBSERVER = """
addEventListener("DOMContentLoaded", () => {
  const video = document.getElementById("camera-video");
  const canvas = document.createElement("canvas");
  canvas.width = 32; canvas.height = 24;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let showing = false;
  const frame = (now, meta) => {
    ctx.drawImage(video, 0, 0, 32, 24);
    const px = ctx.getImageData(0, 0, 32, 24).data;
    let min = 255, max = 0;
    for (let i = 0; i < px.length; i += 4) { min = Math.min(min, px[i]); max = Math.max(max, px[i]); }
    const code = max - min > 100;
    if (code && !showing) performance.mark("bench:code-visible", { startTime: meta.presentationTime || now });
    showing = code;
    video.requestVideoFrameCallback(frame);
  };
  video.addEventListener("playing", () => video.requestVideoFrameCallback(frame));
});
"""


def wait_for_checks(page: Any, count: int, timeout_s: float) -> None:
    """Until the page has measured ``count`` checks (polled from here: the page's CSP forbids the string
    evaluation Playwright's wait_for_function uses)."""
    deadline = time.monotonic() + timeout_s
    while page.evaluate("performance.getEntriesByName('pv:check').length") < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} checks after {timeout_s} s")
        time.sleep(0.02)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(values), "median_ms": round(statistics.median(values), 2), "p95_ms": round(p95, 2),
            "min_ms": round(ordered[0], 2), "max_ms": round(ordered[-1], 2)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    redis_server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False).start()
    redis = sync_client(redis_server.url)
    world = in_thread(make_world, redis_server.url, redis, IssuerKey.generate([ISSUER]))
    started = start_stack(world, tmp_path_factory.mktemp("stack"), with_bridge=False)
    try:
        yield started
    finally:
        stop_stack(started)
        redis.close()
        redis_server.stop()


def test_wedge_enter_to_verdict(stack: Any) -> None:
    codes = [stack.world.wp1(PERMITS["valid"], iat=int(time.time()) - 60 - i) for i in range(SCANS + 5)]
    with sync_playwright() as p:
        browser = launch(p)
        clerk = open_clerk(browser.new_context(viewport={"width": 1366, "height": 768}), stack)
        clerk.signed_in()
        page = clerk.page
        page.evaluate("performance.setResourceTimingBufferSize(10000)")
        for i, code in enumerate(codes):
            page.keyboard.insert_text(code)  # the scanner's burst, as one input
            page.keyboard.press("Enter")
            expect(page.locator("#history li")).to_have_count(min(i + 1, 20))
            wait_for_checks(page, i + 1, 15)
        checks = page.evaluate("performance.getEntriesByName('pv:check').map(m => ({d: m.duration, ...m.detail}))")
        browser.close()
    checks = checks[5:]  # the first few warm the page's modules and the worker
    assert len(checks) == SCANS and all(c["result"] == "VALID" for c in checks)
    total = [c["d"] for c in checks]
    server = [c["serverMs"] for c in checks]
    fetch = [c["fetchMs"] for c in checks]
    RESULTS["wedge"] = {
        "enter_to_verdict_on_screen": summary(total),
        "api_own_time_server_timing": summary(server),
        "fetch_in_page": summary(fetch),
        "page_added_over_api_time": summary([t - s for t, s in zip(total, server)]),
        "page_added_over_fetch": summary([t - f for t, f in zip(total, fetch)]),
        "enter_to_verdict_in_the_dom": summary([c["drawnMs"] for c in checks]),
        "verdict_in_the_dom_to_painted": summary([c["d"] - c["drawnMs"] for c in checks]),
    }


def test_camera_code_in_view_to_verdict(stack: Any, tmp_path: Path) -> None:
    code = qr_luma(stack.world.wp1(PERMITS["valid"]))
    video = write_y4m(tmp_path / "cycle.y4m", [blank_luma()] * 20 + [code] * 20)
    with sync_playwright() as p:
        browser = launch(p, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-video-capture={video}")
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.add_init_script(OBSERVER)
        clerk = open_clerk(context, stack)
        clerk.signed_in()
        page = clerk.page
        page.keyboard.press("F2")
        wait_for_checks(page, SCANS + 2, (SCANS + 10) * 3)
        data = page.evaluate("""() => ({
            visible: performance.getEntriesByName('bench:code-visible').map(m => m.startTime),
            checks: performance.getEntriesByName('pv:check').map(m => ({end: m.startTime + m.duration, ...m.detail})),
            decodes: performance.getEntriesByName('pv:decode').map(m => ({d: m.duration, found: m.detail.found})),
            decoder: document.getElementById('camera-state').dataset.decoder,
        })""")
        browser.close()
    assert data["decoder"] == "zxing-wasm"
    latencies, server = [], []
    for check in data["checks"][1:]:  # the first entry may have begun before the observer's first frame
        seen = [t for t in data["visible"] if t <= check["end"]]
        if seen:
            latencies.append(check["end"] - seen[-1])
            server.append(check["serverMs"])
    assert len(latencies) >= SCANS
    decodes = [d["d"] for d in data["decodes"]]
    RESULTS["camera"] = {
        "decoder": data["decoder"],
        "frame_decode": summary(decodes),
        "frame_decode_with_code": summary([d["d"] for d in data["decodes"] if d["found"]]),
        "frame_decode_without_code": summary([d["d"] for d in data["decodes"] if not d["found"]]),
        "code_in_view_to_verdict_on_screen": summary(latencies),
        "api_own_time_server_timing": summary(server),
    }


def test_write_results() -> None:
    wedge, camera = RESULTS["wedge"], RESULTS["camera"]
    added_p95 = wedge["page_added_over_api_time"]["p95_ms"]
    decode_p95 = camera["frame_decode"]["p95_ms"]
    targets = [
        {"name": "wedge: page's time over the API's own time, p95 ms", "value": added_p95, "target": "<= 50",
         "met": added_p95 <= 50},
        {"name": "wedge: Enter to verdict on screen / API's own time, medians",
         "value": round(wedge["enter_to_verdict_on_screen"]["median_ms"] / wedge["api_own_time_server_timing"]["median_ms"], 1),
         "target": "-", "met": True},
        {"name": "camera: frame decode (zxing-wasm, 640x480), p95 ms", "value": decode_p95, "target": "< 100",
         "met": decode_p95 < 100},
    ]
    document = {
        "about": {
            "command": "python3 -m pytest benchmarks/test_bench_counter.py -p no:cacheprovider -s",
            "scans": SCANS,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average_at_end": os.getloadavg(),
            "note": "other sessions share this machine: compare runs by their load averages",
            "method": __doc__.split("Method", 1)[1].strip() if __doc__ else "",
        },
        "targets": targets,
        "figures": RESULTS,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({"targets": targets, "figures": RESULTS}, indent=2))
    assert all(isinstance(t["value"], (int, float)) for t in targets)
