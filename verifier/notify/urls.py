"""Where webhooks may go: the URL rules and the SSRF rules, checked at subscription and
again before every delivery (a name may resolve elsewhere tomorrow).

- The URL: ``https://`` (``http://`` only to loopback, for tests and the demo), a
  host, no user info, no fragment, at most 2,000 characters.
- Every address the host resolves to must be public (``is_global``): private,
  link-local (cloud metadata ``169.254.169.254`` among them), unique-local,
  shared (100.64/10), multicast, reserved and unspecified addresses are refused,
  IPv4-mapped IPv6 judged by its IPv4 address, unless a network of the allow-list
  setting (``VERIFIER_WEBHOOK_ALLOW_NETWORKS``) holds the address. Loopback is
  allowed while ``VERIFIER_WEBHOOK_ALLOW_LOOPBACK`` is on (the default, for tests and
  the demo; production turns it off). The metadata address is refused even then.
- The delivery connects to the address that was checked (no second resolution that
  could answer otherwise), sends the host name as ``Host`` and TLS SNI, follows no
  redirect (a 3xx is a failure) and reads at most a few KB of the answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["AddressPolicy", "UrlRefused", "Target", "check_url", "resolve_target"]

MAX_URL_LENGTH = 2000
METADATA = ipaddress.ip_address("169.254.169.254")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """A webhook URL that may not be used; the message says why (safe to show its owner)."""


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    scheme: str
    host: str
    """The host name or address, as written (IPv6 without brackets)."""
    port: int
    path: str
    """Path and query, as sent in the request line."""


@dataclass(frozen=True, slots=True)
class Target:
    """A URL with the address it was checked at."""

    url: ParsedUrl
    address: IPAddress

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.url.scheme}://{host}:{self.url.port}{self.url.path}"

    @property
    def host_header(self) -> str:
        host = f"[{self.url.host}]" if ":" in self.url.host else self.url.host
        default = 443 if self.url.scheme == "https" else 80
        return host if self.url.port == default else f"{host}:{self.url.port}"


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_loopback: bool = True
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, allow_loopback: bool, networks: str) -> "AddressPolicy":
        try:
            parsed = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",") if n.strip())
        except ValueError as exc:
            raise ValueError(f"VERIFIER_WEBHOOK_ALLOW_NETWORKS: {exc}") from None
        return cls(allow_loopback, parsed)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be reached (None: it may)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allow_networks):
            return None
        if address == METADATA:
            return "the cloud metadata address"
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address"
        if address.is_global and not address.is_multicast:
            return None
        if address.is_unspecified:
            return "the unspecified address"
        if address.is_link_local:
            return "a link-local address"
        if address.is_private:
            return "a private address"
        return "not a public address"


def check_url(url: str) -> ParsedUrl:
    """The URL's parts, or :class:`UrlRefused` (no resolution yet)."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UrlRefused("the URL contains white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UrlRefused("the URL must be https:// (http:// only to loopback)")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL must not carry a user name or password")
    if parts.fragment:
        raise UrlRefused("the URL must not have a fragment")
    host = parts.hostname
    if not host:
        raise UrlRefused("the URL has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ParsedUrl(scheme, host, port or (443 if scheme == "https" else 80), path)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def judge(url: ParsedUrl, addresses: Sequence[IPAddress], policy: AddressPolicy) -> IPAddress:
    """The address to connect to, or :class:`UrlRefused`: every address the name has
    must be allowed (else a name with one public and one private address would reach
    the private one on another try)."""
    if not addresses:
        raise UrlRefused(f"the host {url.host!r} does not resolve")
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise UrlRefused(f"the host {url.host!r} resolves to {reason}")
    if url.scheme == "http":
        unwrapped = [a.ipv4_mapped or a if isinstance(a, ipaddress.IPv6Address) else a for a in addresses]
        if not all(a.is_loopback for a in unwrapped):
            raise UrlRefused("http:// is allowed only to loopback; use https://")
    return addresses[0]


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))


async def resolve_target(url: str | ParsedUrl, policy: AddressPolicy, *, timeout_s: float = 5.0) -> Target:
    """Parse, resolve and judge a URL: the :class:`Target` to connect to, or :class:`UrlRefused`."""
    parsed = url if isinstance(url, ParsedUrl) else check_url(url)
    literal = _literal(parsed.host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM), timeout_s)
        except (OSError, asyncio.TimeoutError, UnicodeError):
            infos = []
        addresses = _unique(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos)
    return Target(parsed, judge(parsed, addresses, policy))
