"""Where webhooks may go: any text is a URL or a clear refusal; every address is judged."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.notify.urls import AddressPolicy, ParsedUrl, UrlRefused, check_url, resolve_target

POLICY = AddressPolicy()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"https?://[^/]{0,40}(/.{0,40})?", fullmatch=True))
def test_any_text_is_a_url_or_a_refusal(text: str) -> None:
    try:
        parsed = check_url(text)
    except UrlRefused as exc:
        assert str(exc)
        return
    assert isinstance(parsed, ParsedUrl) and parsed.scheme in ("http", "https") and parsed.host
    assert 0 < parsed.port < 65536 and parsed.path.startswith("/")


@settings(max_examples=500, deadline=None)
@given(st.ip_addresses())
def test_every_address_is_judged(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    reason = POLICY.refusal(address)
    unwrapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
    if reason is None:
        assert unwrapped.is_loopback or (unwrapped.is_global and not unwrapped.is_multicast)
    else:
        assert not (unwrapped.is_global and not unwrapped.is_multicast) or unwrapped == ipaddress.ip_address(
            "169.254.169.254")


@pytest.mark.parametrize(("address", "refused"), [
    ("8.8.8.8", None), ("2001:4860:4860::8888", None), ("127.0.0.1", None), ("::1", None),
    ("10.0.0.1", "a private address"), ("172.16.5.4", "a private address"), ("fd00::1", "a private address"),
    ("169.254.169.254", "the cloud metadata address"), ("fe80::1", "a link-local address"),
    ("224.0.0.1", "not a public address"), ("::ffff:192.168.0.1", "a private address"),
    ("0.0.0.0", "the unspecified address"),
])
def test_the_rules(address: str, refused: str | None) -> None:
    assert POLICY.refusal(ipaddress.ip_address(address)) == refused


def test_loopback_off_and_an_allow_list() -> None:
    strict = AddressPolicy.from_settings(False, "10.1.0.0/16, fd12::/16")
    assert strict.refusal(ipaddress.ip_address("127.0.0.1")) == "a loopback address"
    assert strict.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert strict.refusal(ipaddress.ip_address("fd12::5")) is None
    assert strict.refusal(ipaddress.ip_address("10.2.0.1")) == "a private address"
    with pytest.raises(ValueError, match="ALLOW_NETWORKS"):
        AddressPolicy.from_settings(True, "not-a-network")


def test_a_name_is_judged_by_every_address_it_has() -> None:
    target = asyncio.run(resolve_target("http://localhost:8099/hook?x=1", POLICY))
    assert target.address.is_loopback and target.url.path == "/hook?x=1"
    assert target.host_header == "localhost:8099" and target.connect_url.endswith(":8099/hook?x=1")
    with pytest.raises(UrlRefused, match="does not resolve"):
        asyncio.run(resolve_target("https://no-such-host.invalid/hook", POLICY))
