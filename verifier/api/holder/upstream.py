"""The API's one call to the authoritative permit system: the holder's signed notice.

The service never signs permits: the ``WP1:`` code of a holder's notice comes from the
upstream's ``GET /notice/{pn}`` (documented in ``verifier.upstream``). A small async
httpx client with a short timeout (a holder is waiting); the answer is decoded
strictly. Not the sync job's client: the API and the sync job do not import each other.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

import httpx
import msgspec

from verifier.lib.upstream_notice import Notice, notice_decoder

__all__ = ["NoNotice", "NoticeClient", "NoticeUnavailable"]

TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)


class NoticeUnavailable(Exception):
    """The upstream cannot be asked now (not configured, unreachable, failing, or answering nonsense)."""


class NoNotice(Exception):
    """The upstream issues no notice for this permit (cancelled, ended, unknown to it)."""


class NoticeClient:
    __slots__ = ("_base_url", "_client")

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    async def notice(self, permit_number: str) -> Notice:
        if not self._base_url:
            raise NoticeUnavailable("no upstream URL is configured")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT)
        try:
            reply = await self._client.get(f"{self._base_url}/notice/{quote(permit_number, safe='')}")
        except httpx.HTTPError as exc:
            raise NoticeUnavailable(type(exc).__name__) from None
        if reply.status_code in (404, 409, 410):
            raise NoNotice(reply.status_code)
        if reply.status_code != 200:
            raise NoticeUnavailable(f"HTTP {reply.status_code}")
        try:
            return notice_decoder.decode(reply.content)
        except msgspec.DecodeError as exc:
            raise NoticeUnavailable(f"undecodable notice: {exc}") from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
