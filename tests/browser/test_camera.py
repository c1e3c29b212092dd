"""The camera path: Chromium's fake capture device plays a y4m video of a code minted in the test.

The page's decoder is zxing-wasm here (see conftest: headless Chromium on Linux has no
BarcodeDetector, and the terminal setting pins the path), loaded from this origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from playwright.sync_api import Browser, expect

from tests.api.conftest import PERMITS
from tests.browser.conftest import Stack, open_clerk
from tests.browser.y4m import code_video

pytestmark = pytest.mark.slow  # a browser or a server of its own per test


def test_a_valid_wp1_code_by_camera(stack: Stack, camera_browser: Callable[[Path], Browser], tmp_path: Path) -> None:
    code = stack.world.wp1(PERMITS["valid"])
    browser = camera_browser(code_video(tmp_path / "valid-wp1.y4m", code))
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        clerk = open_clerk(context, stack)
        clerk.signed_in()
        page = clerk.page
        page.keyboard.press("F2")
        state = page.get_by_test_id("camera-state")
        expect(state).to_have_attribute("data-decoder", "zxing-wasm", timeout=20_000)
        clerk.expect_result("VALID", "accept")
        expect(clerk.verdict).to_have_attribute("data-source", "qr")
        expect(page.get_by_test_id("verdict-holder")).to_contain_text(PERMITS["valid"].n)
        # the held code is checked once, not once a frame
        expect(page.get_by_test_id("history").locator("li")).to_have_count(1)
        wasm = [url for url in clerk.requests if url.endswith(".wasm")]
        assert wasm == [stack.url + "/vendor/zxing-wasm/dist/reader/zxing_reader.wasm"]
        assert clerk.foreign_requests() == []
        decodes = page.evaluate("performance.getEntriesByName('pv:decode').length")
        assert decodes >= 1
        page.get_by_test_id("camera-toggle").click()
        expect(state).to_have_attribute("data-state", "off")
    finally:
        context.close()


def test_a_cancelled_permit_by_camera(stack: Stack, camera_browser: Callable[[Path], Browser], tmp_path: Path) -> None:
    browser = camera_browser(code_video(tmp_path / "cancelled.y4m", stack.world.wp1(PERMITS["cancelled"])))
    context = browser.new_context()
    try:
        clerk = open_clerk(context, stack)
        clerk.signed_in()
        clerk.page.get_by_test_id("camera-toggle").click()
        clerk.expect_result("PERMIT_CANCELLED", "refuse")
    finally:
        context.close()
