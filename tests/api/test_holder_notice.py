"""The holder's notice, from the real upstream simulator, decoded back with a real QR decoder.

The simulator's permits are loaded into the index and its trust list into Redis, as the
sync job would; the holder signs in with an ES1 code the simulator issued; the notice's
QR code, read by zxing-cpp from the PNG and from the PDF rendered by PDFium, is a code
the API verifies VALID.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pypdfium2
import pytest
import zxingcpp
from litestar.testing import TestClient
from PIL import Image

from verifier.api.auth.keys import add_api_key
from verifier.api.holder.notice import QR_SIZE_MM
from verifier.index.records import PermitRecord
from verifier.index.trust_store import save_trust_list_sync
from verifier.lib.redis_server import free_port
from verifier.upstream.server import UpstreamServer
from verifier.upstream.simulator import Upstream
from tests.api.conftest import IndexHelper, open_client, run_async

pytestmark = pytest.mark.integration

_CST = dt.timezone(dt.timedelta(hours=8))
RENDER_DPI = 150


@dataclass
class Simulated:
    upstream: Upstream
    server: UpstreamServer
    redis_url: str
    tokens: dict[str, str]
    active: PermitRecord
    cancelled: PermitRecord
    state_dir: Path
    """The workers' state (their audit files)."""

    def headers(self, role: str, holder: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        if holder is not None:
            headers["X-Holder-Token"] = holder
        return headers

    def es1(self, permit: PermitRecord) -> str:
        reply = httpx.post(f"{self.server.url}/issue/es1", json={"pn": permit.pn}, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()["qr"]  # type: ignore[no-any-return]


@pytest.fixture
def simulated(redis_url: str, redis_sync: Any, tmp_path: Path) -> Iterator[Simulated]:
    upstream = Upstream.create(permits=200, seed=11)
    today = dt.datetime.now(_CST).date().isoformat()
    records = list(upstream.records())
    active = next(r for r in records if r.status == "active" and r.vf <= today < r.vt and r.cn and r.ssn)
    cancelled = next(r for r in records if r.status == "active" and r.vf <= today < r.vt and r.cn and r.ssn
                     and r.pn != active.pn)
    cancelled = upstream.apply("cancel", cancelled.pn).permit
    IndexHelper(redis_sync).load([upstream.permit(r.pn) for r in records])
    save_trust_list_sync(redis_sync, orjson.dumps(upstream.trust_list()))
    tokens = {}
    for role in ("essc_platform", "exit_entry"):
        tokens[role] = run_async(redis_url, lambda r, role=role: add_api_key(r, role, f"test {role}"))[1]
    with UpstreamServer(upstream) as server:
        yield Simulated(upstream, server, redis_url, tokens, active, cancelled, tmp_path / "state")


@pytest.fixture
def client(simulated: Simulated) -> Iterator[TestClient[Any]]:
    from verifier.lib.settings import Settings

    client = open_client(Settings(redis_url=simulated.redis_url, upstream_url=simulated.server.url,
                                  state_dir=simulated.state_dir))
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def signed_in(client: Any, simulated: Simulated, permit: PermitRecord) -> str:
    reply = client.post("/v1/holder/session", json={"code": simulated.es1(permit)},
                        headers=simulated.headers("essc_platform"))
    assert reply.status_code == 200, reply.text
    return reply.json()["token"]  # type: ignore[no-any-return]


def notice(client: Any, simulated: Simulated, token: str, accept: str | None) -> Any:
    headers = simulated.headers("essc_platform", token)
    if accept is not None:
        headers["Accept"] = accept
    return client.get("/v1/holder/notice", headers=headers)


def verdict_of(client: Any, simulated: Simulated, code: str) -> dict[str, Any]:
    reply = client.post("/v1/verify/qr", json={"qr": code, "terminal": "GATE-1"}, headers=simulated.headers("exit_entry"))
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def decode_one(image: Image.Image) -> zxingcpp.Barcode:
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, found
    return found[0]


def test_the_code_as_text_is_the_upstreams_and_verifies(client: Any, simulated: Simulated) -> None:
    token = signed_in(client, simulated, simulated.active)
    reply = notice(client, simulated, token, "text/plain")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    code = reply.text.strip()
    assert code.startswith("WP1:")
    verdict = verdict_of(client, simulated, code)
    assert (verdict["result"], verdict["permit"]["pn"]) == ("VALID", simulated.active.pn)


def test_the_png_decodes_back_to_a_valid_code(client: Any, simulated: Simulated) -> None:
    token = signed_in(client, simulated, simulated.active)
    reply = notice(client, simulated, token, "image/png")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    assert reply.headers["content-disposition"].startswith("attachment;")
    assert reply.headers["cache-control"] == "no-store"
    code = decode_one(Image.open(io.BytesIO(reply.content))).text
    assert verdict_of(client, simulated, code)["result"] == "VALID"


@pytest.mark.parametrize("accept", ["application/pdf", None, "*/*", "text/html, application/pdf;q=0.9"])
def test_the_pdf_shows_the_fields_and_a_printable_qr_that_verifies(client: Any, simulated: Simulated,
                                                                   accept: str | None) -> None:
    permit = simulated.active
    token = signed_in(client, simulated, permit)
    reply = notice(client, simulated, token, accept)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/pdf"
    document = pypdfium2.PdfDocument(reply.content)
    try:
        assert len(document) == 1
        page = document[0]
        width_pt, height_pt = page.get_size()
        assert (round(width_pt), round(height_pt)) == (595, 842)  # A4
        text = page.get_textpage().get_text_range()
        for value in (permit.n, permit.pn, permit.nat, permit.dob, permit.emp, permit.vf, permit.vt):
            assert value in text, value
        image = page.render(scale=RENDER_DPI / 72).to_pil()
    finally:
        document.close()
    barcode = decode_one(image)
    assert verdict_of(client, simulated, barcode.text)["result"] == "VALID"
    # the symbol's printed width (finder pattern corners; no quiet zone), at the render's dpi
    position = barcode.position
    width_px = ((position.top_right.x - position.top_left.x) ** 2 + (position.top_right.y - position.top_left.y) ** 2) ** 0.5
    width_mm = width_px / RENDER_DPI * 25.4
    assert width_mm >= 35, width_mm
    assert width_mm <= QR_SIZE_MM


def test_no_notice_for_a_cancelled_permit(client: Any, simulated: Simulated) -> None:
    token = signed_in(client, simulated, simulated.cancelled)
    reply = notice(client, simulated, token, "application/pdf")
    assert reply.status_code == 409, reply.text
    assert "cancelled" in reply.json()["detail"]


def test_a_media_type_it_cannot_give_is_406(client: Any, simulated: Simulated) -> None:
    token = signed_in(client, simulated, simulated.active)
    reply = notice(client, simulated, token, "application/json")
    assert reply.status_code == 406
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "application/pdf" in reply.json()["detail"]


def test_an_unreachable_upstream_is_503_and_the_notice_is_never_made_up(simulated: Simulated) -> None:
    from verifier.lib.settings import Settings

    client = open_client(Settings(redis_url=simulated.redis_url, upstream_url=f"http://127.0.0.1:{free_port()}",
                                  state_dir=simulated.state_dir))
    try:
        token = signed_in(client, simulated, simulated.active)
        reply = notice(client, simulated, token, "text/plain")
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        assert "WP1:" not in reply.text
    finally:
        client.__exit__(None, None, None)


def test_the_simulators_notice_endpoint(simulated: Simulated) -> None:
    url = simulated.server.url
    reply = httpx.get(f"{url}/notice/{simulated.active.pn}", timeout=10)
    assert reply.status_code == 200
    body = reply.json()
    assert (body["pn"], body["v"]) == (simulated.active.pn, simulated.active.v)
    assert body["qr"].startswith("WP1:")
    assert httpx.get(f"{url}/notice/{simulated.cancelled.pn}", timeout=10).status_code == 409
    assert httpx.get(f"{url}/notice/WP0000000000000000", timeout=10).status_code == 404
