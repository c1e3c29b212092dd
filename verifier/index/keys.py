"""Key layout of the permit index (see the package docstring for the why).

All keys of one namespace share the hash tag ``{<namespace>}``, so every one of them is
in one Redis Cluster slot and any step may touch any of them atomically (one Lua
script, or one MGET). ``<G>`` is a generation id, ``<B>`` a bucket number::

    {pv}:current           string  "<G>:<buckets>:hc" of the live generation; missing = not ready
    {pv}:genseq            counter  generation ids
    {pv}:gens              set      generation ids that exist (live, loading or orphaned)
    {pv}:leader            string   "<fence>:<owner>" with a TTL: the sync job's leader lock
    {pv}:fence             counter  fencing tokens (seeded from the server clock, in us)
    {pv}:g<G>:meta         hash     state, seq (cursor), feed, count, as_of, ... of generation G
    {pv}:g<G>:p:<pn>       string   the permit record, in the compact stored layout (verifier.index.stored)
    {pv}:g<G>:s:<B>        hash     crc32(ssn) -> "pn[ pn...]"  (listpack-small buckets)
    {pv}:g<G>:c:<B>        hash     crc32(cn)  -> "pn[ pn...]"

A bucket's fields are the ids' crc32 in decimal (:func:`lookup_field`), which a
listpack keeps as a 4-byte integer: 6 bytes a field instead of 17-21 for the id
itself, ~25 MB less for a million permits. Two ids of one crc32 share a field, whose
value then lists the permits of both, as for an id on several permits: the reader
keeps only records that carry the id asked for (a stale or shared field is never an
answer). A generation written before this layout keyed its buckets by the ids
themselves; its pointer has no ``:h`` (:class:`Pointer`), and readers and writers
keep using the ids there until the next full load replaces it.
    {pv}:changelog         stream   every applied change, cursor move and snapshot switch, in order
                                    (verifier.index.change_stream; bounded, the notifications' source)

Changes are published on ``<namespace>:changes`` (:data:`CHANGES_CHANNEL` for "pv").
The Status Lists as published (``{pv}:sl:...``, written by ``verifier status-lists``, not
by the sync job) are laid out in :mod:`verifier.index.status_lists`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEFAULT_NAMESPACE = "pv"

# A bucket hash holds at most ~64 permits' ids on average (~55-73 with the upstream's
# 0.9 ssn and ~1.1 cards a permit): below hash-max-listpack-entries (128) even at the
# tail of the distribution (mean + 5 sigma), so buckets stay listpacks. (48 made twice
# the buckets for a million permits: 12 MB more of per-key overhead, and 1,065,536 keys
# in all, which doubles the main dict's table to 2^21 slots, 8 MB more.)
TARGET_IDS_PER_BUCKET = 64
MIN_BUCKETS = 1024
MAX_BUCKETS = 1 << 22
DEFAULT_BUCKETS = 1 << 15


def buckets_for(expected_permits: int | None) -> int:
    """A power of two of buckets for about ``expected_permits`` ids of one kind."""
    if not expected_permits:
        return DEFAULT_BUCKETS
    wanted = max(MIN_BUCKETS, expected_permits // TARGET_IDS_PER_BUCKET + 1)
    return min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())


def bucket_of(identifier: bytes, buckets: int) -> int:
    """Bucket of an ssn or a card number (``buckets`` is a power of two)."""
    return zlib.crc32(identifier) & (buckets - 1)


def lookup_field(identifier: bytes, hashed: bool = True) -> bytes:
    """The field an ssn or a card number has in its bucket: its crc32 in decimal
    (``hashed``, see the module docstring), or the id itself (an older generation)."""
    return b"%d" % zlib.crc32(identifier) if hashed else identifier


@dataclass(frozen=True, slots=True)
class Pointer:
    """The live generation as ``{ns}:current`` names it: ``<G>:<buckets>:hc``."""

    generation: int
    buckets: int
    hashed: bool = True
    """Bucket fields are the ids' crc32 (:func:`lookup_field`); False for a generation
    written before that layout (its pointer is ``<G>:<buckets>``)."""
    compact: bool = False
    """Records are written in the compact stored layout (:mod:`verifier.index.stored`:
    no permit number, dates as day numbers; pointer ``<G>:<buckets>:hc``). Writers keep
    a generation's layout: a generation loaded before it (``:h``) keeps msgspec's
    layout until the next full load replaces it, so that a reader of the older code
    reads it to the end; such a reader refuses a ``:hc`` pointer (an unknown layout)
    instead of misreading its records. Readers tell the two layouts apart record by
    record, so they read either."""

    @property
    def raw(self) -> bytes:
        if self.compact:
            return b"%d:%d:hc" % (self.generation, self.buckets)
        if self.hashed:
            return b"%d:%d:h" % (self.generation, self.buckets)
        return b"%d:%d" % (self.generation, self.buckets)

    @classmethod
    def parse(cls, raw: bytes | str | None) -> "Pointer | None":
        if raw is None:
            return None
        if isinstance(raw, str):
            raw = raw.encode()
        generation, _, rest = raw.partition(b":")
        buckets, _, layout = rest.partition(b":")
        if layout not in (b"", b"h", b"hc"):
            raise ValueError(f"unknown index layout {layout!r} in the pointer")
        return cls(int(generation), int(buckets), hashed=layout != b"", compact=layout == b"hc")


class KeyLayout:
    """Key names of one namespace."""

    __slots__ = ("namespace", "tag", "current", "genseq", "gens", "leader", "fence", "channel", "changelog")

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not namespace or any(c in namespace for c in "{}: \n"):
            raise ValueError(f"bad index namespace {namespace!r}")
        self.namespace = namespace
        self.tag = "{" + namespace + "}"
        self.current = f"{self.tag}:current".encode()
        self.genseq = f"{self.tag}:genseq".encode()
        self.gens = f"{self.tag}:gens".encode()
        self.leader = f"{self.tag}:leader".encode()
        self.fence = f"{self.tag}:fence".encode()
        self.channel = f"{namespace}:changes".encode()
        self.changelog = f"{self.tag}:changelog".encode()

    def prefix(self, generation: int) -> bytes:
        return f"{self.tag}:g{generation}:".encode()

    def meta(self, generation: int) -> bytes:
        return self.prefix(generation) + b"meta"

    def record_prefix(self, generation: int) -> bytes:
        return self.prefix(generation) + b"p:"

    def ssn_prefix(self, generation: int) -> bytes:
        return self.prefix(generation) + b"s:"

    def cn_prefix(self, generation: int) -> bytes:
        return self.prefix(generation) + b"c:"
