"""A card read from the counter page: challenge from the API, the bridge's software card signs, verdict."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.api.conftest import PERMITS
from tests.browser.conftest import Clerk


def test_a_card_read_through_the_bridge(counter: Clerk) -> None:
    counter.signed_in()
    counter.page.keyboard.press("F3")
    counter.expect_result("VALID", "accept")
    page = counter.page
    expect(counter.verdict).to_have_attribute("data-source", "card")
    expect(page.get_by_test_id("verdict-meta")).to_contain_text("Card read")
    expect(page.get_by_test_id("verdict-fields").locator("[data-field=cn]")).to_have_text(PERMITS["valid"].cn)
    expect(page.get_by_test_id("verdict-holder")).to_contain_text(PERMITS["valid"].n)  # from the index
    expect(page.get_by_test_id("card-state")).to_contain_text("software card")
    bridge = counter.stack.bridge.url  # type: ignore[union-attr]
    assert [url for url in counter.requests if url.startswith(bridge)] == [bridge + "/v1/sign"]


def test_a_bridge_that_is_not_running_is_said_so(counter: Clerk) -> None:
    counter.signed_in()
    counter.page.route(counter.stack.bridge.url + "/**", lambda route: route.abort("connectionrefused"))  # type: ignore[union-attr]
    counter.page.get_by_test_id("card-read").click()
    expect(counter.page.get_by_test_id("card-state")).to_contain_text("bridge is not running")
    expect(counter.verdict).to_have_attribute("data-outcome", "waiting")
