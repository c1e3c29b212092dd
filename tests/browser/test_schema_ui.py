"""The OpenAPI UI works offline: Swagger UI from the project's own copy, under its CSP, nothing from elsewhere."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.browser.conftest import Stack


def test_the_schema_ui_renders_from_our_own_copy(browser: Browser, stack: Stack) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        requests: list[str] = []
        errors: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(stack.url + "/schema/swagger")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Permit verification service", timeout=20_000)
        expect(page.locator(".opblock-summary-path", has_text="/v1/verify/qr").first).to_be_visible()
        assert stack.url + "/vendor/swagger-ui-dist/swagger-ui-bundle.js" in requests
        assert [url for url in requests if not url.startswith(stack.url + "/") and not url.startswith("data:")] == []
        assert errors == []  # no CSP violation, no failed load
    finally:
        context.close()
