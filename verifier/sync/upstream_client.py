"""The sync job's client of the upstream interface (documented in ``verifier.upstream``).

httpx, with timeouts on every phase; failures (transport errors, 5xx, 429, and any
answer that is not exactly what the interface promises) are retried with jittered
exponential backoff ("full jitter": a random delay up to base * 2**attempt, capped).
Every answer is decoded strictly with msgspec into the shapes of
:mod:`verifier.lib.upstream_wire`, and checked: a feed page must hold exactly the dense
run of events after the cursor it was asked for; a snapshot stream must be framed
correctly, start with its header and end with a trailer whose counts agree. A
truncated or malformed answer is an error, retried, never applied.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

import httpx
import msgspec

from verifier.index.records import PermitRecord
from verifier.lib import upstream_wire as wire

log = logging.getLogger("verifier.sync.upstream")

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)
RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})


class UpstreamError(Exception):
    """The upstream could not be used (after retries): unreachable, failing, or answering
    something that breaks the interface."""


class UpstreamProtocolError(UpstreamError):
    """An answer that breaks the interface: malformed, truncated, inconsistent."""


class CursorTooOld(UpstreamError):
    """410 Gone: the feed no longer holds the events after the cursor; resynchronise."""

    def __init__(self, message: str, *, feed_id: str | None, first_seq: int | None) -> None:
        super().__init__(message)
        self.feed_id = feed_id
        self.first_seq = first_seq


class Stopped(Exception):
    """The stop event was set while waiting to retry."""


class _Gone(msgspec.Struct):
    feed_id: str | None = None
    first_seq: int | None = None


class Backoff:
    """Full-jitter exponential backoff: ``uniform(0, min(cap, base * 2**attempt))``."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.cap, self.base * (2 ** min(attempt, 30))))


class SnapshotStream:
    """One snapshot being read: ``header`` first, then ``batches()``, checked to the end."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.iter_bytes(1 << 20)
        self._buffer = bytearray()
        self.header = self._read_header()
        self.received = 0

    def _next_frame(self) -> tuple[bytes, bytes] | None:
        """(kind, payload) of the next frame, or None at a clean end of the stream."""
        buffer = self._buffer
        size = wire.FRAME_HEADER.size
        while True:
            if len(buffer) >= size:
                kind, length = wire.FRAME_HEADER.unpack_from(buffer, 0)
                if length > wire.MAX_FRAME_BYTES:
                    raise UpstreamProtocolError(f"snapshot frame of {length} bytes is over the limit")
                if length <= len(buffer) - size:
                    payload = bytes(buffer[size:size + length])
                    del buffer[:size + length]
                    return kind, payload
            try:
                chunk = next(self._chunks)
            except StopIteration:
                if buffer:
                    raise UpstreamProtocolError("snapshot stream ends inside a frame (truncated)") from None
                return None
            except httpx.HTTPError as exc:
                raise UpstreamError(f"snapshot stream broke: {type(exc).__name__}: {exc}") from exc
            buffer += chunk

    def _read_header(self) -> wire.SnapshotHeader:
        frame = self._next_frame()
        if frame is None or frame[0] != wire.FRAME_HEAD:
            raise UpstreamProtocolError("snapshot stream does not start with its header")
        try:
            header = wire.snapshot_header_decoder.decode(frame[1])
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(f"snapshot header: {exc}") from exc
        if header.count < 0 or header.seq < 0 or not header.feed_id:
            raise UpstreamProtocolError("snapshot header: negative count or seq, or no feed id")
        return header

    def batches(self) -> Iterator[list[PermitRecord]]:
        """Lists of records; raises UpstreamProtocolError unless the stream ends exactly right."""
        while True:
            frame = self._next_frame()
            if frame is None:
                raise UpstreamProtocolError("snapshot stream ends without its trailer (truncated)")
            kind, payload = frame
            if kind == wire.FRAME_RECORDS:
                try:
                    records = wire.snapshot_records_decoder.decode(payload)
                except msgspec.DecodeError as exc:
                    raise UpstreamProtocolError(f"snapshot records: {exc}") from exc
                self.received += len(records)
                if self.received > self.header.count:
                    raise UpstreamProtocolError("snapshot holds more records than its header says")
                yield records
            elif kind == wire.FRAME_TRAILER:
                try:
                    trailer = wire.snapshot_trailer_decoder.decode(payload)
                except msgspec.DecodeError as exc:
                    raise UpstreamProtocolError(f"snapshot trailer: {exc}") from exc
                if trailer.count != self.header.count or trailer.count != self.received:
                    raise UpstreamProtocolError(
                        f"snapshot trailer says {trailer.count} records, header {self.header.count}, "
                        f"received {self.received}"
                    )
                if trailer.seq != self.header.seq:
                    raise UpstreamProtocolError("snapshot trailer and header disagree on seq")
                if self._next_frame() is not None:
                    raise UpstreamProtocolError("bytes after the snapshot trailer")
                return
            else:
                raise UpstreamProtocolError(f"unknown snapshot frame kind {kind!r}")


class UpstreamClient:
    """Feed pages, snapshots and the trust list of one upstream, with retries."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("no upstream URL (UPSTREAM_URL or --upstream)")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff or Backoff()
        self._stop = stop or threading.Event()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "UpstreamClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- retries ------------------------------------------------------------------

    def wait(self, delay: float) -> None:
        """Sleep ``delay`` unless stopped first (then raise Stopped)."""
        if self._stop.wait(delay):
            raise Stopped()

    def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except CursorTooOld:
                raise
            except (UpstreamError, httpx.HTTPError) as exc:
                if attempt >= self.retries:
                    if isinstance(exc, UpstreamError):
                        raise
                    raise UpstreamError(f"{what}: {type(exc).__name__}: {exc}") from exc
                delay = self.backoff.delay(attempt)
                # debug: the sync job logs one line per change of state, not per retry.
                log.debug("upstream %s failed (%s: %s); retry %d in %.2fs",
                            what, type(exc).__name__, exc, attempt + 1, delay)
                attempt += 1
                self.wait(delay)

    @staticmethod
    def _check_status(response: httpx.Response, what: str) -> None:
        if response.status_code == 200:
            return
        if response.status_code in RETRYABLE_STATUS:
            raise UpstreamError(f"{what}: HTTP {response.status_code}")
        raise UpstreamProtocolError(f"{what}: unexpected HTTP {response.status_code}")

    # -- the interface ------------------------------------------------------------

    def _feed_once(self, after: int, limit: int) -> wire.FeedPage:
        response = self._http.get(
            "/feed", params={"after": after, "limit": limit}, headers={"Accept": wire.FEED_MEDIA_TYPE}
        )
        if response.status_code == 410:
            try:
                gone = msgspec.json.decode(response.content, type=_Gone)
            except msgspec.DecodeError:
                gone = _Gone()
            raise CursorTooOld(f"cursor {after} is too old for the feed", feed_id=gone.feed_id,
                               first_seq=gone.first_seq)
        self._check_status(response, "feed")
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        try:
            if content_type == wire.FEED_MEDIA_TYPE:
                page = wire.feed_page_decoder.decode(response.content)
            elif content_type == "application/json":
                page = wire.feed_page_json_decoder.decode(response.content)
            else:
                raise UpstreamProtocolError(f"feed: unexpected content type {content_type!r}")
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(f"feed page: {exc}") from exc
        check_page(page, after, limit)
        return page

    def feed(self, after: int, limit: int = 1000) -> wire.FeedPage:
        """The events after ``after`` (at most ``limit``). Raises CursorTooOld on 410."""
        return self._with_retries("feed", lambda: self._feed_once(after, limit))

    def open_snapshot(self) -> tuple[httpx.Response, SnapshotStream]:
        """Start reading a snapshot (retried until its header has arrived).

        The caller reads ``stream.batches()`` to the end and then closes the response;
        an error while reading is not retried here (the caller starts over).
        """

        def attempt() -> tuple[httpx.Response, SnapshotStream]:
            request = self._http.build_request("GET", "/snapshot", headers={"Accept": wire.SNAPSHOT_MEDIA_TYPE})
            response = self._http.send(request, stream=True)
            try:
                self._check_status(response, "snapshot")
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                if content_type != wire.SNAPSHOT_MEDIA_TYPE:
                    raise UpstreamProtocolError(f"snapshot: unexpected content type {content_type!r}")
                return response, SnapshotStream(response)
            except BaseException:
                response.close()
                raise

        return self._with_retries("snapshot", attempt)

    def _trust_list_once(self) -> bytes:
        response = self._http.get("/trust-list", headers={"Accept": "application/json"})
        self._check_status(response, "trust list")
        try:
            msgspec.json.decode(response.content, type=wire.TrustListDoc)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(f"trust list: {exc}") from exc
        return response.content

    def trust_list(self) -> bytes:
        """The JWK Set, as received (after a structural check; WIRE-FORMAT 4 checks are the index's)."""
        return self._with_retries("trust list", self._trust_list_once)


def check_page(page: wire.FeedPage, after: int, limit: int) -> None:
    """The interface's promises about one page; a page that breaks any is not applied."""
    if not page.feed_id:
        raise UpstreamProtocolError("feed page without a feed id")
    if page.after != after:
        raise UpstreamProtocolError(f"feed page is for cursor {page.after}, not {after}")
    if len(page.events) > limit:
        raise UpstreamProtocolError(f"feed page holds {len(page.events)} events, more than the {limit} asked")
    if page.page_end != after + len(page.events):
        raise UpstreamProtocolError(
            f"feed page ends at {page.page_end} but holds {len(page.events)} events after {after} (truncated?)"
        )
    if page.last_seq < page.page_end:
        raise UpstreamProtocolError("feed page goes past the feed's head")
    expected = after + 1
    for event in page.events:
        if event.seq != expected:
            raise UpstreamProtocolError(f"feed page: event {event.seq} where {expected} was due (not dense)")
        if event.permit.v < 1:
            raise UpstreamProtocolError(f"feed page: event {event.seq} has version {event.permit.v}")
        expected += 1
