"""The verdict cache's entry and eviction, shared by both twins.

The cache itself is ``TrustList.verdict_cache`` (a plain dict: a new trust list version
starts empty), keyed by the WP1 QR text. Only outcomes reached after a verified
signature are stored: the ones that saved a signature check.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from fastpath._verdict import StatusRef, Verdict

# Above this many entries, eviction drops a 64th of the bound at once: in a dict,
# finding the oldest entry scans past every slot deleted before it, so evicting
# one entry per insert at a bound of 65,536 cost ~50 us an insert (more than the
# signature check the cache saves); in batches it is well under a microsecond.
EVICTION_FRACTION = 64


class CacheEntry:
    """What a WP1 text gave up to (not including) the time checks.

    ``failure`` is the verdict of a failed claims or issuer check; otherwise
    ``claims``/``permit``/``kid``/``status_ref`` of a good one.
    """

    __slots__ = ("failure", "claims", "permit", "kid", "status_ref")

    def __init__(self, failure: Verdict | None, claims: dict[str, Any] | None,
                 permit: dict[str, Any] | None, kid: bytes | None, status_ref: StatusRef | None) -> None:
        self.failure = failure
        self.claims = claims
        self.permit = permit
        self.kid = kid
        self.status_ref = status_ref


def cache_put(cache: dict[str, CacheEntry], limit: int, text: str, entry: CacheEntry) -> None:
    """Insert, then evict the oldest insertions (dicts keep insertion order) down to the bound.

    Insert first, then trim: whichever thread inserted last trims after it, so the
    bound holds once threads are done, although the steps are not atomic together.
    """
    if limit <= 0:
        return
    cache[text] = entry
    while len(cache) > limit:
        excess = len(cache) - limit + limit // EVICTION_FRACTION
        try:
            victims = list(islice(cache, excess))
        except RuntimeError:  # another thread changed it meanwhile: look again
            continue
        for victim in victims:
            cache.pop(victim, None)
