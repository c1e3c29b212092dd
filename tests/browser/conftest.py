"""Fixtures of the browser tests: the real service, a real card bridge, a real Chromium.

- ``stack`` (module): the shared Redis (flushed once), the API test world (trust list,
  index, one key per role: tests/api/conftest.py), a software card of the "valid"
  permit behind ``verifier.cardbridge`` on a free loopback port, and ``verifier serve``
  (one worker) whose counter page points at that bridge.
- ``browser`` (package): the Debian Chromium (``/usr/bin/chromium``) through Playwright;
  Playwright's own browser download is not used. ``camera_browser(video)`` launches
  another one whose fake camera shows ``video`` (Chromium reads the file once: one
  browser per camera case).
- ``counter`` (function): a fresh browser context on ``/counter/`` as a :class:`Clerk`,
  with every request the page makes recorded (``clerk.requests``).

The page's QR decoder is pinned to zxing-wasm in every test (the terminal setting
``decoder``): headless Chromium on Linux has no BarcodeDetector, and the test must
check the same path whichever Chromium runs it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.api.conftest import ISSUER, PERMITS, World, make_world
from tests.api.servers import Server
from verifier.cardbridge.cards import CARD_CERTIFICATE_FILE, CARD_KEY_FILE, AppletCardSource
from verifier.cardbridge.server import BridgeServer
from verifier.issuing import IssuerKey, SoftwareCard, mint_card_certificate
from verifier.lib.redis_client import sync_client
from verifier.lib.redis_server import EmbeddedRedis, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TERMINAL = "PVG-T2-DESK12"
VERDICT_TIMEOUT_MS = 15_000


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a thread of its own: Playwright's sync API keeps an event loop running in this one,
    and the world's helpers use ``asyncio.run``."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def launch(playwright: Playwright, *extra: str) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *extra], headless=True)


def software_card_folder(world: World, folder: Path, pn_key: str = "valid") -> Path:
    """A card of ``PERMITS[pn_key]`` as `verifier mint card` writes it: key file and certificate."""
    permit = PERMITS[pn_key]
    card = SoftwareCard.generate()
    now = int(time.time())
    certificate = mint_card_certificate(world.issuer, {"cn": permit.cn, "ssn": permit.ssn, "pn": permit.pn},
                                        card.public_key, iat=now - 86400, exp=now + 86400 * 365)
    folder.mkdir(parents=True, exist_ok=True)
    card.save(folder / CARD_KEY_FILE)
    (folder / CARD_CERTIFICATE_FILE).write_bytes(certificate)
    return folder


@dataclass
class Stack:
    world: World
    server: Server
    bridge: BridgeServer | None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def origins(self) -> set[str]:
        """Where the page may send requests: its own origin and the card bridge's."""
        return {self.server.url} | ({self.bridge.url} if self.bridge else set())


def start_stack(world: World, log_dir: Path, *, with_bridge: bool = True) -> Stack:
    api_port = free_port()
    bridge = None
    if with_bridge:
        source = AppletCardSource.from_folder(software_card_folder(world, log_dir / "card"))
        bridge = BridgeServer(source, (f"http://127.0.0.1:{api_port}",), port=0).start()
    server = Server(world, 1, log_dir / "api.log", port=api_port, staleness_bound_s=3600.0,
                    card_bridge_origin=bridge.url if bridge else "")
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        if bridge:
            bridge.stop()
        raise
    return Stack(world, server, bridge)


def stop_stack(stack: Stack) -> None:
    stack.server.stop()
    if stack.bridge:
        stack.bridge.stop()


@pytest.fixture(scope="module")
def stack(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not redis_server.running:
        redis_server.start()
    redis = sync_client(redis_server.url)
    redis.flushall()
    folder = tmp_path_factory.mktemp("counter-stack")
    world = in_thread(make_world, redis_server.url, redis, IssuerKey.generate([ISSUER, "CN-310000"]), folder / "state")
    started = start_stack(world, folder)
    try:
        yield started
    finally:
        stop_stack(started)
        redis.close()


@pytest.fixture
def own_stack(own_redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[Stack]:
    """A stack on a Redis of its own, for tests that stop Redis or the API."""
    redis = own_redis_server.client()
    world = in_thread(make_world, own_redis_server.url, redis, IssuerKey.generate([ISSUER, "CN-310000"]),
                      tmp_path / "state")
    started = start_stack(world, tmp_path, with_bridge=False)
    try:
        yield started
    finally:
        stop_stack(started)
        redis.close()


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread while it
# is started, and the other suites call asyncio.run; it stops when the last browser test is done.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not os.path.exists(CHROMIUM):
        raise AssertionError(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def camera_browser(playwright: Playwright) -> Iterator[Callable[[Path], Browser]]:
    launched: list[Browser] = []

    def start(video: Path) -> Browser:
        browser = launch(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-video-capture={video}")
        launched.append(browser)
        return browser

    yield start
    for browser in launched:
        browser.close()


@dataclass
class Clerk:
    """The clerk's steps at the counter, on one page."""

    page: Page
    stack: Stack
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def open(self) -> "Clerk":
        self.page.goto(self.stack.url + "/counter/")
        return self

    def sign_in(self, role: str = "exit_entry", *, token: str | None = None, terminal: str = TERMINAL,
                remember: bool = False) -> None:
        self.page.get_by_test_id("terminal-id").fill(terminal)
        self.page.get_by_test_id("api-key").fill(token or self.stack.world.token[role])
        if remember:
            self.page.get_by_test_id("remember").check()
        self.page.get_by_test_id("sign-in").click()

    def signed_in(self, role: str = "exit_entry") -> "Clerk":
        self.open().sign_in(role)
        expect(self.page.get_by_test_id("code-input")).to_be_focused()
        return self

    def scan(self, code: str, *, enter: bool = True) -> None:
        """What a keyboard-wedge scanner does: type the code into the focused field, then Enter."""
        self.page.keyboard.type(code)
        if enter:
            self.page.keyboard.press("Enter")

    @property
    def verdict(self) -> Any:
        return self.page.get_by_test_id("verdict")

    def expect_result(self, result: str, outcome: str) -> None:
        expect(self.verdict).to_have_attribute("data-result", result, timeout=VERDICT_TIMEOUT_MS)
        expect(self.verdict).to_have_attribute("data-outcome", outcome)

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests
                if not any(url == o or url.startswith(o + "/") for o in self.stack.origins)]


def open_clerk(context: BrowserContext, stack: Stack) -> Clerk:
    # the terminal's decoder setting, as a clerk would set it: zxing-wasm (see the module docstring)
    context.add_init_script("localStorage.setItem('pv.prefs', JSON.stringify("
                            "Object.assign(JSON.parse(localStorage.getItem('pv.prefs') || '{}'), {decoder: 'zxing-wasm'})))")
    page = context.new_page()
    clerk = Clerk(page, stack)
    context.on("request", lambda request: clerk.requests.append(request.url))
    page.on("console", lambda message: clerk.console_errors.append(message.text) if message.type == "error" else None)
    return clerk


@pytest.fixture
def counter(browser: Browser, stack: Stack) -> Iterator[Clerk]:
    context = browser.new_context(locale="en-GB", viewport={"width": 1366, "height": 768}, accept_downloads=True)
    try:
        yield open_clerk(context, stack)
    finally:
        context.close()


def verdict_json(page: Page) -> dict[str, Any]:
    return json.loads(page.get_by_test_id("verdict").get_attribute("data-json") or "{}")
