"""Fetching a bundle: the trust list, both Status Lists and the receipt keys, checked, then written.

Three documents of the service (``GET /v1/trust-list``, ``/v1/status-lists/permits``,
``/v1/status-lists/cards``; ``/v1/receipt-keys`` too, for checking receipts offline),
each read with a size bound. Nothing is written unless all of it holds:

- the trust list is one fastpath accepts (WIRE-FORMAT 4);
- each list is a Status List Token signed by a list signer of that trust list, with
  the right ``typ`` and bits, and not past its ``exp`` (WIRE-FORMAT 8);
- neither list is older than the one the bundle held already has (a lagging replica
  or a replayed answer must not take a scanner back in time).

Then the bundle file is replaced atomically (:meth:`fastpath.offline.OfflineBundle.save`):
a fetch cut short, refused or killed leaves the previous bundle as it was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from fastpath import StatusList
from fastpath.offline import BUNDLE_FILE, CARDS, PERMITS, BundleError, OfflineBundle
from fastpath.status_list import MAX_TOKEN_BYTES
from verifier.index.status_lists import MEDIA_TYPE, PATH

__all__ = ["FetchError", "fetch_bundle", "replace_bundle"]

MAX_JSON_BYTES = 1 << 20
"""A trust list or a receipt key set, at most (a few hundred keys)."""


class FetchError(Exception):
    """No good bundle could be fetched; the message says why (nothing was written)."""


def _get(client: httpx.Client, path: str, limit: int, media_type: str) -> bytes:
    try:
        with client.stream("GET", path) as response:
            if response.status_code != 200:
                raise FetchError(f"GET {path}: HTTP {response.status_code}")
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            if kind != media_type:
                raise FetchError(f"GET {path}: {kind or 'no content type'}, not {media_type}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"GET {path}: more than {limit} bytes")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {path}: {type(exc).__name__}: {exc}") from None


def fetch_bundle(base_url: str, *, now: int | None = None, timeout_s: float = 10.0,
                 client: httpx.Client | None = None) -> OfflineBundle:
    """The service's bundle at ``base_url``, checked; :class:`FetchError` when it is not good."""
    now = int(time.time()) if now is None else now
    owned = client is None
    client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, follow_redirects=False)
    try:
        trust_list = _get(client, "/v1/trust-list", MAX_JSON_BYTES, "application/json")
        tokens = {name: _get(client, f"{PATH}/{name}", MAX_TOKEN_BYTES, MEDIA_TYPE) for name in (PERMITS, CARDS)}
        try:
            receipt_keys: Any = orjson.loads(_get(client, "/v1/receipt-keys", MAX_JSON_BYTES, "application/json"))
        except (FetchError, orjson.JSONDecodeError):
            receipt_keys = None  # receipts cannot be checked with this bundle; the rest still can
        if not isinstance(receipt_keys, dict):
            receipt_keys = None
    finally:
        if owned:
            client.close()
    try:
        bundle = OfflineBundle.from_parts(trust_list, tokens, now=now, receipt_keys=receipt_keys,
                                          source=base_url, fetched_at=now)
    except BundleError as exc:
        raise FetchError(str(exc)) from None
    for name, held in bundle.lists.items():
        if not isinstance(held, StatusList):
            raise FetchError(f"the {name} list is refused: {held}")
        if held.exp <= now:
            raise FetchError(f"the {name} list expired at {held.exp}: the service is not re-signing it")
    return bundle


def replace_bundle(bundle: OfflineBundle, directory: str | Path) -> tuple[Path, OfflineBundle | None]:
    """Write ``bundle`` over the one in ``directory`` (atomically), unless the one held has a newer
    list (:class:`FetchError`). Returns the path and the bundle replaced (None if there was none)."""
    directory = Path(directory)
    held: OfflineBundle | None = None
    if (directory / BUNDLE_FILE).exists():
        try:
            held = OfflineBundle.load(directory)
        except BundleError:
            held = None  # an unusable bundle is replaced by any good one
    if held is not None:
        for name, new in bundle.lists.items():
            old = held.lists.get(name)
            if isinstance(old, StatusList) and isinstance(new, StatusList) and new.iat < old.iat:
                raise FetchError(f"the {name} list fetched (iat {new.iat}) is older than the one held "
                                 f"(iat {old.iat}); kept the bundle held")
    return bundle.save(directory), held
