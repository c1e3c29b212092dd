"""Screenshots of every screen of the counter page, in English and Chinese, to look at (not collected by
the suite: run it by name). Chinese needs a CJK font on the machine (apt-get install fonts-noto-cjk).

    python -m pytest tests/browser/screens.py -p no:cacheprovider      # PNGs in $COUNTER_SHOTS or /tmp/counter-shots
"""

from __future__ import annotations

import os

import msgspec
from playwright.sync_api import expect

from tests.api.conftest import NOT_IN_INDEX, PERMITS
from tests.browser.conftest import Clerk
from verifier.run.samples import tamper_signature

OUT = os.environ.get("COUNTER_SHOTS", "/tmp/counter-shots")


def test_screens(counter: Clerk) -> None:
    os.makedirs(OUT, exist_ok=True)
    page = counter.page
    w = counter.stack.world
    counter.open()
    page.get_by_test_id("terminal-id").fill("PVG-T2-DESK12")
    page.screenshot(path=f"{OUT}/signin-en.png")
    counter.sign_in(token="pvk_000000000000_" + "A" * 43)
    expect(page.get_by_test_id("sign-in-error")).not_to_be_empty()
    page.screenshot(path=f"{OUT}/signin-wrongkey-en.png")
    counter.sign_in()
    expect(page.get_by_test_id("code-input")).to_be_focused()
    page.screenshot(path=f"{OUT}/waiting-en.png")
    cases = [("valid", w.wp1(PERMITS["valid"]), "VALID"), ("cancelled", w.wp1(PERMITS["cancelled"]), "PERMIT_CANCELLED"),
             ("badsig", tamper_signature(w.wp1(PERMITS["valid"])), "BAD_SIGNATURE"),
             ("es1", w.es1(PERMITS["valid"]), "VALID"), ("superseded", w.wp1(msgspec.structs.replace(PERMITS["superseded"], v=1)), "SUPERSEDED"),
             ("notfound", w.wp1(NOT_IN_INDEX), "PERMIT_NOT_FOUND")]
    for name, code, result in cases:
        counter.scan(code)
        counter.expect_result(result, "accept" if result == "VALID" else "refuse")
        page.screenshot(path=f"{OUT}/{name}-en.png")
    page.keyboard.press("F8")
    page.screenshot(path=f"{OUT}/notfound-zh.png")
    counter.scan(w.wp1(PERMITS["valid"]))
    counter.expect_result("VALID", "accept")
    page.screenshot(path=f"{OUT}/valid-zh.png")
    counter.scan(w.wp1(PERMITS["cancelled"]))
    counter.expect_result("PERMIT_CANCELLED", "refuse")
    page.screenshot(path=f"{OUT}/cancelled-zh.png")
    page.keyboard.press("Escape")
    page.screenshot(path=f"{OUT}/waiting-zh.png")
    page.keyboard.press("F8")
    page.route("**/v1/verify/qr", lambda route: route.abort())
    counter.scan(w.wp1(PERMITS["valid"]))
    counter.expect_result("NO_ANSWER", "cannot-confirm")
    page.screenshot(path=f"{OUT}/noanswer-en.png")
    page.unroute("**/v1/verify/qr")
    page.get_by_test_id("manual-pn").fill(PERMITS["valid"].pn)
    page.get_by_test_id("manual-dob").fill("1985-04-12")
    page.get_by_test_id("manual-submit").click()
    counter.expect_result("VALID", "accept")
    page.get_by_test_id("card-read").click()
    expect(counter.verdict).to_have_attribute("data-source", "card", timeout=15000)
    page.screenshot(path=f"{OUT}/card-en.png")
    page.get_by_test_id("settings").click()
    page.screenshot(path=f"{OUT}/settings-en.png")
