"""The counter page's routes, its headers and CSP, the vendored packages, the OpenAPI UI, CORS (real Redis)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.api.conftest import PERMITS, World, open_client
from verifier.api.counter.routes import VENDOR_DIR
from verifier.lib.settings import Settings, check_card_bridge_origin, parse_origins

AGENCY = "https://portal.agency.example"


def test_the_page_is_served_with_a_strict_csp(client: TestClient[Any]) -> None:
    page = client.get("/counter/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="code-input"' in page.text
    csp = page.headers["content-security-policy"]
    assert csp == (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; "
        "connect-src 'self' http://127.0.0.1:7471; media-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    assert "unsafe-inline" not in csp and "unsafe-eval'" not in csp.replace("wasm-unsafe-eval'", "")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["permissions-policy"].startswith("camera=(self)")
    # no inline script or style in the page: the CSP would block them
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and "<style" not in page.text and " style=" not in page.text


def test_the_page_without_its_slash_is_sent_to_its_folder(client: TestClient[Any]) -> None:
    reply = client.get("/counter", follow_redirects=False)
    assert (reply.status_code, reply.headers["location"]) == (308, "/counter/")


def test_every_asset_of_the_page_is_served_from_this_origin(client: TestClient[Any]) -> None:
    page = client.get("/counter/").text
    for url in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not re.match(r"[a-z]+:|//", url), url
        assert client.get("/counter/" + url).status_code == 200, url
    for module in ("main.js", "scanner.js", "api.js", "view.js"):
        reply = client.get("/counter/" + module)
        assert reply.headers["content-type"].startswith("text/javascript")
        assert "http://" not in reply.text.replace("http://127.0.0.1", "") and "https://" not in reply.text


def test_the_page_config_comes_from_the_settings(world: World) -> None:
    client = open_client(world.settings(card_bridge_origin="http://127.0.0.1:9123", counter_clear_s=12.0))
    try:
        assert client.get("/counter/config.json").json() == {"card_bridge": "http://127.0.0.1:9123", "clear_after_s": 12.0}
        assert "connect-src 'self' http://127.0.0.1:9123;" in client.get("/counter/").headers["content-security-policy"]
    finally:
        client.__exit__(None, None, None)
    client = open_client(world.settings(card_bridge_origin=""))
    try:
        assert client.get("/counter/config.json").json()["card_bridge"] is None
        assert "connect-src 'self';" in client.get("/counter/").headers["content-security-policy"]
    finally:
        client.__exit__(None, None, None)


def test_an_unknown_page_file_is_a_problem_document(client: TestClient[Any]) -> None:
    reply = client.get("/counter/no-such-module.js")
    assert reply.status_code == 404 and reply.headers["content-type"] == "application/problem+json"


def test_the_vendored_packages_carry_licence_and_version(client: TestClient[Any]) -> None:
    versions = (VENDOR_DIR / "VERSIONS").read_text()
    assert re.search(r"^zxing-wasm \d+\.\d+\.\d+ MIT [0-9a-f]{64}$", versions, re.M)
    assert re.search(r"^swagger-ui-dist \d+\.\d+\.\d+ Apache-2\.0 [0-9a-f]{64}$", versions, re.M)
    assert "MIT License" in (VENDOR_DIR / "zxing-wasm" / "LICENSE").read_text()
    assert "Apache License" in (VENDOR_DIR / "swagger-ui-dist" / "LICENSE").read_text()
    wasm = client.get("/vendor/zxing-wasm/dist/reader/zxing_reader.wasm")
    assert wasm.headers["content-type"] == "application/wasm" and wasm.content[:4] == b"\0asm"
    assert "wasm-unsafe-eval" in wasm.headers["content-security-policy"]


def test_the_openapi_ui_is_served_from_our_own_copy(client: TestClient[Any]) -> None:
    for path in ("/schema", "/schema/swagger"):
        page = client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert client.get("/schema/openapi.json").json()["paths"]["/v1/me"]


@pytest.mark.parametrize("path", ["/schema/nope", "/schema/redoc", "/schema/swagger/x", "/schema/openapi.yaml.bak"])
def test_schema_errors_are_problem_documents(client: TestClient[Any], path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["status"] == 404


def test_me_names_the_key_and_whether_it_may_verify(client: TestClient[Any], world: World) -> None:
    me = client.get("/v1/me", headers=world.headers("service_hall")).json()
    assert me == {"key_id": world.key_id["service_hall"], "role": "service_hall", "name": "test service_hall",
                  "may_verify": True}
    assert client.get("/v1/me", headers=world.headers("partner")).json()["may_verify"] is False
    assert client.get("/v1/me", headers={"Authorization": "Bearer pvk_nope"}).status_code == 401


def test_answers_say_the_service_s_own_time(client: TestClient[Any], world: World) -> None:
    reply = client.post("/v1/verify/qr", headers=world.headers("exit_entry"),
                        json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T1"})
    assert reply.json()["result"] == "VALID"
    assert re.fullmatch(r"app;dur=\d+\.\d\d", reply.headers["server-timing"])


# -- CORS -----------------------------------------------------------------------------------


@pytest.fixture
def cors_client(world: World) -> Iterator[TestClient[Any]]:
    client = open_client(world.settings(cors_origins=(AGENCY,)))
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def preflight(client: TestClient[Any], origin: str, method: str = "POST",
              headers: str = "authorization,content-type") -> Any:
    return client.options("/v1/verify/qr", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


def test_no_origin_is_allowed_by_default(client: TestClient[Any]) -> None:
    reply = preflight(client, AGENCY)
    assert "access-control-allow-origin" not in reply.headers


def test_a_listed_origin_gets_its_preflight_answered(cors_client: TestClient[Any]) -> None:
    reply = preflight(cors_client, AGENCY)
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == AGENCY
    assert set(reply.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    assert "Authorization" in reply.headers["access-control-allow-headers"]
    assert reply.headers["vary"] == "Origin"


def test_the_actual_request_of_a_listed_origin_may_be_read(cors_client: TestClient[Any], world: World) -> None:
    reply = cors_client.post("/v1/verify/qr", headers={**world.headers("exit_entry"), "Origin": AGENCY},
                             json={"qr": world.wp1(PERMITS["valid"]), "terminal": "T1"})
    assert reply.json()["result"] == "VALID"
    assert reply.headers["access-control-allow-origin"] == AGENCY
    assert "Server-Timing" in reply.headers["access-control-expose-headers"]
    other = cors_client.get("/health/live", headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(("origin", "method", "headers"), [
    ("https://elsewhere.example", "POST", "content-type"),
    (AGENCY + ":8443", "POST", "content-type"),   # another port is another origin
    (AGENCY, "DELETE", "content-type"),
    (AGENCY, "POST", "x-forwarded-for"),
])
def test_other_preflights_are_refused_with_a_problem(cors_client: TestClient[Any], origin: str, method: str,
                                                     headers: str) -> None:
    reply = preflight(cors_client, origin, method, headers)
    assert reply.status_code == 403
    assert reply.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in reply.headers


def test_origin_settings_are_checked() -> None:
    assert parse_origins(" https://a.example , http://10.0.0.5:8080/ ") == ("https://a.example", "http://10.0.0.5:8080")
    for bad in ("*", "https://a.example/path", "a.example", "https://*.example", "ftp://a.example"):
        with pytest.raises(ValueError):
            parse_origins(bad)
    assert check_card_bridge_origin("http://localhost:7471/") == "http://localhost:7471"
    for bad in ("http://192.168.1.5:7471", "https://127.0.0.1:7471", "http://127.0.0.1"):
        with pytest.raises(ValueError):
            check_card_bridge_origin(bad)
    settings = Settings.from_env(cors_origins=["https://a.example"], counter_clear_s=45)
    assert Settings.from_env(**{k.lower(): None for k in ()}).cors_origins == ()
    assert settings.to_env()["VERIFIER_CORS_ORIGINS"] == "https://a.example"
    with pytest.raises(ValueError):
        Settings.from_env(counter_clear_s=0)


def test_serve_refuses_a_card_bridge_that_is_not_on_the_loopback() -> None:
    result = subprocess.run([sys.executable, "-m", "verifier", "serve", "--card-bridge-origin", "http://10.1.2.3:7471"],
                            capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"http://127.0.0.1:PORT" in result.stderr
