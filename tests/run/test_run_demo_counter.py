"""The demo's counter: the page's URL, a QR image of a real code, and the whole card flow through its bridge."""

from __future__ import annotations

import base64
import io
import signal
from pathlib import Path

import httpx
import pytest
import segno

pytestmark = pytest.mark.slow  # a whole demo of its own


def test_demo_prints_the_counter_and_does_the_card_flow(tmp_path: Path, start_demo) -> None:  # type: ignore[no-untyped-def]
    demo = start_demo(tmp_path, "--permits", "300", "--event-rate", "0")
    info = demo.info
    printed = demo.output_text()
    assert info["counter"] == info["url"] + "/counter/" and info["counter"] in printed
    page = httpx.get(info["counter"], timeout=10)
    assert page.status_code == 200 and 'data-testid="code-input"' in page.text
    assert f"connect-src 'self' {info['card_bridge']};" in page.headers["content-security-policy"]

    # the QR image is the valid sample's real code
    image = Path(info["qr_images"]["valid"])
    assert str(image) in printed
    expected = io.BytesIO()
    segno.make(info["samples"]["valid"]["body"]["qr"], error="m", micro=False).save(expected, kind="png", scale=6, border=4)
    assert image.read_bytes() == expected.getvalue()

    # the card: challenge from the API, the bridge's card signs it (as the page asks, from the page's origin), verdict
    headers = demo.headers("exit_entry")
    challenge = httpx.post(info["url"] + "/v1/cards/challenge", headers=headers, timeout=10).json()["challenge"]
    origin = info["url"]
    status = httpx.get(info["card_bridge"] + "/v1/status", headers={"Origin": origin}, timeout=10)
    assert status.json()["source"] == "simulator" and status.headers["access-control-allow-origin"] == origin
    read = httpx.post(info["card_bridge"] + "/v1/sign", json={"challenge": challenge}, headers={"Origin": origin},
                      timeout=10).json()
    verdict = httpx.post(info["url"] + "/v1/verify/card", headers=headers, timeout=10, json={
        "certificate": read["certificate"], "challenge": challenge, "signature": read["signature"], "terminal": "DEMO-1",
    }).json()
    assert (verdict["result"], verdict["profile"]) == ("VALID", "CARD")
    assert verdict["permit"]["pn"] == info["samples"]["manual"]["body"]["pn"]  # the valid permit
    assert len(base64.b64decode(read["signature"])) == 64
    assert "card-bridge" in info["pids"]
    assert demo.interrupt(signal.SIGINT) == 0
