"""When the service cannot answer, the page says "cannot confirm, do not accept", never green."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.api.conftest import PERMITS
from tests.browser.conftest import Stack, open_clerk

pytestmark = pytest.mark.slow  # a browser or a server of its own per test


def _signed_in(browser: Browser, stack: Stack):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    clerk = open_clerk(context, stack)
    clerk.signed_in()
    return context, clerk


def test_redis_stopped_means_cannot_confirm(browser: Browser, own_stack: Stack, own_redis_server) -> None:  # type: ignore[no-untyped-def]
    context, clerk = _signed_in(browser, own_stack)
    try:
        code = own_stack.world.wp1(PERMITS["valid"])
        clerk.scan(code)
        clerk.expect_result("VALID", "accept")
        own_redis_server.stop()
        clerk.scan(own_stack.world.wp1(PERMITS["valid"], iat=1_700_000_000 + 7))  # a new code: no cached verdict
        expect(clerk.verdict).to_have_attribute("data-outcome", "cannot-confirm", timeout=15_000)
        expect(clerk.verdict).to_have_attribute("data-result", "STATUS_UNAVAILABLE")
        expect(clerk.page.get_by_test_id("verdict-headline")).to_have_text("CANNOT CONFIRM")
        expect(clerk.page.get_by_test_id("verdict-kicker")).to_have_text("Do not accept")
        # the signed fields may show, but nothing invites the officer to go on
        expect(clerk.page.get_by_test_id("verdict-compare")).to_be_hidden()
        expect(clerk.page.get_by_test_id("verdict-line")).to_contain_text("cannot be reached or is not up to date")
    finally:
        context.close()


def test_the_api_unreachable_means_cannot_confirm(browser: Browser, own_stack: Stack) -> None:
    context, clerk = _signed_in(browser, own_stack)
    try:
        own_stack.server.stop()
        clerk.scan(own_stack.world.wp1(PERMITS["valid"]))
        clerk.expect_result("NO_ANSWER", "cannot-confirm")
        expect(clerk.page.get_by_test_id("verdict-line")).to_contain_text("did not answer")
        expect(clerk.page.get_by_test_id("receipt")).to_be_hidden()
        expect(clerk.page.get_by_test_id("history").locator("li").first).to_have_attribute("data-result", "NO_ANSWER")
    finally:
        context.close()
