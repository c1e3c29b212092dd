"""The counter page in a real Chromium against the real service: the clerk's steps, one visible outcome each."""

from __future__ import annotations

import json
import re

import msgspec
from playwright.sync_api import expect

from tests.api.conftest import PERMITS, run_async
from tests.browser.conftest import TERMINAL, Clerk, in_thread
from verifier.api.auth.keys import revoke_api_key
from verifier.api.receipts.signer import verify_receipt
from verifier.run.samples import tamper_signature


def test_a_wrong_key_gets_a_clear_message_and_no_counter(counter: Clerk) -> None:
    counter.open().sign_in(token="pvk_0123456789ab_" + "A" * 43)
    expect(counter.page.get_by_test_id("sign-in-error")).to_contain_text("refused")
    expect(counter.page.get_by_test_id("code-input")).to_be_hidden()
    assert "pvk_" not in counter.page.url
    assert counter.page.evaluate("sessionStorage.getItem('pv.apiKey') || localStorage.getItem('pv.apiKey')") is None


def test_a_key_whose_role_cannot_verify_is_refused_at_sign_in(counter: Clerk) -> None:
    counter.open().sign_in("partner")
    expect(counter.page.get_by_test_id("sign-in-error")).to_contain_text("(partner) may not verify")
    expect(counter.page.get_by_test_id("code-input")).to_be_hidden()


def test_the_key_stays_in_the_tab_unless_remembered(counter: Clerk) -> None:
    counter.signed_in()
    page = counter.page
    assert page.evaluate("sessionStorage.getItem('pv.apiKey')") == counter.stack.world.token["exit_entry"]
    assert page.evaluate("localStorage.getItem('pv.apiKey')") is None
    page.get_by_test_id("sign-out").click()
    counter.sign_in(remember=True)
    expect(page.get_by_test_id("code-input")).to_be_focused()
    assert page.evaluate("localStorage.getItem('pv.apiKey')") == counter.stack.world.token["exit_entry"]
    page.reload()  # the terminal id and the remembered key sign it in again
    expect(page.get_by_test_id("who")).to_contain_text(TERMINAL)
    page.get_by_test_id("sign-out").click()
    assert page.evaluate("localStorage.getItem('pv.apiKey')") is None


def test_a_valid_wp1_code_shows_the_holder_and_asks_to_compare_with_the_passport(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(PERMITS["valid"]))
    counter.expect_result("VALID", "accept")
    page = counter.page
    expect(page.get_by_test_id("verdict-headline")).to_have_text("VALID")
    expect(page.get_by_test_id("verdict-holder")).to_contain_text("SMITH JOHN")
    expect(page.get_by_test_id("verdict-holder")).to_contain_text("12 APR 1985")
    expect(page.get_by_test_id("verdict-compare")).to_contain_text("passport in hand")
    expect(page.get_by_test_id("verdict-meta")).to_contain_text(re.compile(r"Status as of [0-9.]+ (s|min)"))
    expect(page.get_by_test_id("code-input")).to_be_focused()  # ready for the next scan


def test_an_es1_code_by_the_wedge_path_then_its_double_read(counter: Clerk) -> None:
    code = counter.stack.world.es1(PERMITS["valid"], lifetime=120)
    counter.signed_in().scan(code)
    counter.expect_result("VALID", "accept")
    meta = counter.page.get_by_test_id("verdict-meta")
    expect(meta).to_contain_text(re.compile(r"stays valid for (1 min \d+ s|\d+(\.\d)? s)"))
    counter.scan(code)  # the scanner read it twice
    expect(counter.page.get_by_test_id("verdict-note")).to_contain_text("first answer, repeated")
    counter.expect_result("VALID", "accept")


def test_a_used_es1_code_from_another_terminal_is_replayed(counter: Clerk) -> None:
    code = counter.stack.world.es1(PERMITS["valid"])
    counter.signed_in().scan(code)
    counter.expect_result("VALID", "accept")
    counter.page.get_by_test_id("sign-out").click()
    counter.sign_in(terminal="PVG-T2-DESK13")
    expect(counter.page.get_by_test_id("code-input")).to_be_focused()
    counter.scan(code)
    counter.expect_result("REPLAYED", "refuse")
    expect(counter.page.get_by_test_id("verdict-note")).to_contain_text("works once")


def test_a_scanner_without_an_enter_suffix_submits_itself(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(PERMITS["valid"]), enter=False)
    counter.expect_result("VALID", "accept")
    expect(counter.page.get_by_test_id("code-input")).to_have_value("")


def test_a_cancelled_permit_is_refused_in_plain_words(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(PERMITS["cancelled"]))
    counter.expect_result("PERMIT_CANCELLED", "refuse")
    page = counter.page
    expect(page.get_by_test_id("verdict-kicker")).to_have_text("Do not accept")
    expect(page.get_by_test_id("verdict-headline")).to_have_text("PERMIT CANCELLED")
    expect(page.get_by_test_id("verdict-line")).to_have_text("The permit has been cancelled.")
    expect(page.get_by_test_id("verdict-reasons")).to_contain_text("status.cancelled")
    expect(page.get_by_test_id("verdict-compare")).to_be_hidden()


def test_a_bad_signature_is_refused_as_forged(counter: Clerk) -> None:
    counter.signed_in().scan(tamper_signature(counter.stack.world.wp1(PERMITS["valid"])))
    counter.expect_result("BAD_SIGNATURE", "refuse")
    expect(counter.page.get_by_test_id("verdict-headline")).to_have_text("FORGED OR ALTERED")
    expect(counter.page.get_by_test_id("verdict-holder")).to_be_hidden()  # nothing of an unproven code is shown


def test_an_outdated_code_is_superseded(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(msgspec.structs.replace(PERMITS["superseded"], v=1)))
    counter.expect_result("SUPERSEDED", "refuse")
    expect(counter.page.get_by_test_id("verdict-line")).to_contain_text("Ask for the current code")


def test_manual_entry_by_keyboard_alone(counter: Clerk) -> None:
    counter.signed_in()
    page = counter.page
    page.keyboard.press("F4")
    expect(page.get_by_test_id("manual-pn")).to_be_focused()
    page.keyboard.type(PERMITS["valid"].pn.lower())
    page.keyboard.press("Tab")
    page.keyboard.type("19850412")  # as a clerk types it; the page makes it 1985-04-12
    page.keyboard.press("Enter")
    counter.expect_result("VALID", "accept")
    expect(counter.verdict).to_have_attribute("data-source", "manual")
    expect(page.get_by_test_id("verdict-meta")).to_contain_text("Manual check")
    expect(page.get_by_test_id("code-input")).to_be_focused()


def test_manual_entry_with_a_wrong_date_of_birth_is_not_valid(counter: Clerk) -> None:
    counter.signed_in()
    page = counter.page
    page.get_by_test_id("manual-pn").fill(PERMITS["valid"].pn)
    page.get_by_test_id("manual-dob").fill("1985-13-40")
    page.get_by_test_id("manual-submit").click()
    expect(page.get_by_test_id("manual-error")).to_contain_text("YYYY-MM-DD")
    expect(counter.verdict).not_to_have_attribute("data-result", re.compile(".*"))
    page.get_by_test_id("manual-dob").fill("1990-01-01")
    page.get_by_test_id("manual-submit").click()
    counter.expect_result("PERMIT_NOT_FOUND", "refuse")  # a wrong date of birth says no more than an unknown permit


def test_the_language_switch(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(PERMITS["cancelled"]))
    counter.expect_result("PERMIT_CANCELLED", "refuse")
    page = counter.page
    page.get_by_test_id("language").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_test_id("verdict-headline")).to_have_text("许可已注销")
    expect(page.get_by_test_id("verdict-kicker")).to_have_text("不予通过")
    expect(page.get_by_test_id("manual-submit")).to_have_text("核验")
    page.reload()  # the terminal keeps its language
    expect(page.get_by_test_id("code-input")).to_be_focused()
    expect(page.get_by_test_id("manual-submit")).to_have_text("核验")
    page.keyboard.press("F8")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("manual-submit")).to_have_text("Check")


def test_a_key_revoked_during_the_day_sends_the_terminal_to_sign_in(counter: Clerk) -> None:
    world = counter.stack.world
    key_id, token = in_thread(world.add_key, "service_hall", "desk to revoke")
    counter.open().sign_in(token=token)
    expect(counter.page.get_by_test_id("code-input")).to_be_focused()
    assert in_thread(run_async, world.redis_url, lambda r: revoke_api_key(r, key_id))
    counter.scan(world.wp1(PERMITS["valid"]))
    expect(counter.page.get_by_test_id("sign-in-error")).to_contain_text("refused by the service")
    expect(counter.page.get_by_test_id("code-input")).to_be_hidden()


def test_the_history_masks_permit_numbers_and_goes_at_sign_out(counter: Clerk) -> None:
    world = counter.stack.world
    counter.signed_in().scan(world.wp1(PERMITS["valid"]))
    counter.expect_result("VALID", "accept")
    counter.scan(world.wp1(PERMITS["cancelled"]))
    counter.expect_result("PERMIT_CANCELLED", "refuse")
    page = counter.page
    items = page.get_by_test_id("history").locator("li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-result", "PERMIT_CANCELLED")
    expect(items.nth(0)).to_contain_text("WP11…0002")
    assert PERMITS["valid"].pn not in page.get_by_test_id("history").inner_text()
    assert PERMITS["valid"].pn not in page.evaluate("sessionStorage.getItem('pv.history')")
    page.get_by_test_id("sign-out").click()
    assert page.evaluate("sessionStorage.getItem('pv.history')") is None
    counter.sign_in()
    expect(page.get_by_test_id("history").locator("li")).to_have_text(["No checks yet."])


def test_a_verdict_clears_itself_after_the_terminal_s_time(counter: Clerk) -> None:
    counter.signed_in()
    page = counter.page
    page.get_by_test_id("settings").click()
    page.get_by_test_id("clear-after").fill("5")
    page.keyboard.press("Escape")  # closes the dialog; the setting is kept
    counter.scan(counter.stack.world.wp1(PERMITS["valid"]))
    counter.expect_result("VALID", "accept")
    expect(page.get_by_test_id("verdict-clears")).to_contain_text("Clears in")
    expect(counter.verdict).to_have_attribute("data-outcome", "waiting", timeout=12_000)
    expect(counter.verdict).not_to_have_attribute("data-result", re.compile(".*"))
    expect(page.get_by_test_id("verdict-holder")).to_be_hidden()  # the next person sees nothing of the last


def test_a_signed_receipt_is_offered_as_a_file(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(PERMITS["valid"]))
    counter.expect_result("VALID", "accept")
    with counter.page.expect_download() as download_info:
        counter.page.get_by_test_id("receipt").click()
    download = download_info.value
    assert re.fullmatch(r"verdict-receipt-\d{8}T\d+Z-VALID\.json", download.suggested_filename)
    with open(download.path(), "rb") as file:
        verdict = json.load(file)
    jwks = counter.page.request.get(counter.stack.url + "/v1/receipt-keys").json()
    assert verdict["result"] == "VALID" and verify_receipt(verdict, jwks)
    expect(counter.page.get_by_test_id("receipt-state")).to_contain_text("Receipt saved")


def test_the_page_makes_no_request_to_another_origin(counter: Clerk) -> None:
    world = counter.stack.world
    counter.signed_in().scan(world.wp1(PERMITS["valid"]))
    counter.expect_result("VALID", "accept")
    counter.page.get_by_test_id("card-read").click()
    expect(counter.verdict).to_have_attribute("data-source", "card", timeout=15_000)
    counter.expect_result("VALID", "accept")
    counter.page.get_by_test_id("language").click()
    counter.page.get_by_test_id("manual-pn").fill(PERMITS["valid"].pn)
    counter.page.get_by_test_id("manual-dob").fill(PERMITS["valid"].dob)
    counter.page.get_by_test_id("manual-submit").click()
    expect(counter.verdict).to_have_attribute("data-source", "manual")
    assert any(url.startswith(counter.stack.bridge.url) for url in counter.requests)  # type: ignore[union-attr]
    assert len(counter.requests) > 15
    assert counter.foreign_requests() == []
    assert counter.console_errors == []


def test_the_csp_stops_a_request_to_another_origin(counter: Clerk) -> None:
    counter.open()
    outcome = counter.page.evaluate("""() => new Promise((resolve) => {
        document.addEventListener("securitypolicyviolation", (e) => resolve("blocked: " + e.violatedDirective));
        fetch("http://127.0.0.2:9/elsewhere").then(() => resolve("sent"), () => {});
    })""")
    assert outcome == "blocked: connect-src"


def test_the_address_without_its_slash_opens_the_page(counter: Clerk) -> None:
    counter.page.goto(counter.stack.url + "/counter")
    assert counter.page.url == counter.stack.url + "/counter/"
    expect(counter.page.get_by_test_id("sign-in")).to_be_visible()


def test_a_permit_number_typed_into_the_scan_field_goes_to_the_manual_check(counter: Clerk) -> None:
    counter.signed_in().scan(PERMITS["valid"].pn)
    page = counter.page
    expect(page.get_by_test_id("manual-pn")).to_have_value(PERMITS["valid"].pn)
    expect(page.get_by_test_id("manual-dob")).to_be_focused()
    page.keyboard.type(PERMITS["valid"].dob)
    page.keyboard.press("Enter")
    counter.expect_result("VALID", "accept")


def test_a_code_typed_with_caps_lock_on_is_still_checked(counter: Clerk) -> None:
    counter.signed_in().scan(counter.stack.world.wp1(PERMITS["valid"]).lower())
    counter.expect_result("VALID", "accept")
