"""The upstream's wire interface: shapes shared by the simulator and the sync client.

This module is the contract (see the ``verifier.upstream`` docstring for the
endpoints). It holds data shapes and the snapshot framing only, here in ``lib``
rather than in the simulator's package so that the sync job (production code) and
the simulator both import it and neither imports the other. Its records are the
index's own (``verifier.index.records``, plain msgspec Structs): the upstream's
record is what the index stores.

Snapshot stream framing (``GET /snapshot``, media type ``application/x-permit-snapshot``):
a sequence of frames, each ``kind`` (1 byte) + ``length`` (4 bytes, big-endian,
unsigned) + ``length`` bytes of msgpack:

- ``H`` once, first: a ``SnapshotHeader`` map (feed id, the sequence the snapshot is
  consistent with, the number of records);
- ``R`` zero or more: a msgpack array of ``PermitRecord`` (each itself an array);
- ``T`` once, last: a ``SnapshotTrailer`` map repeating the count.

A stream without its trailer, with bytes after it, with an unknown frame kind, a
frame longer than ``MAX_FRAME_BYTES``, or counts that disagree is truncated or
corrupt and must not be applied.
"""

from __future__ import annotations

import struct
from typing import Final, Literal

import msgspec

from verifier.index.records import ChangeEvent, PermitRecord

FEED_MEDIA_TYPE: Final = "application/msgpack"
SNAPSHOT_MEDIA_TYPE: Final = "application/x-permit-snapshot"
SNAPSHOT_FORMAT: Final = "permit-snapshot/1"

FRAME_HEADER: Final = struct.Struct(">cI")
FRAME_HEAD: Final = b"H"
FRAME_RECORDS: Final = b"R"
FRAME_TRAILER: Final = b"T"
MAX_FRAME_BYTES: Final = 32 * 1024 * 1024
MAX_FEED_LIMIT: Final = 10_000
"""The most events one feed page may carry."""


class FeedPage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``GET /feed?after=SEQ&limit=N``: the events with ``after < seq <= last_seq``, in order.

    Sequence numbers are dense: the page's events are exactly ``after + 1``,
    ``after + 2``, ... ``page_end``; an empty page has ``page_end == after``.
    """

    feed_id: str
    """Identifies this incarnation of the feed; it changes when the feed is reset."""
    after: int
    """The cursor the page was asked for."""
    page_end: int
    """Sequence number of the last event in the page (``after`` when empty)."""
    last_seq: int
    """The feed's head: the newest sequence number the upstream has assigned."""
    head_time: float
    """When the head event was made (epoch seconds; 0 when the feed is empty)."""
    time: float
    """The upstream's clock when it answered: the page is the whole feed as of this time
    when ``page_end == last_seq`` (lag in seconds is measured on this clock alone)."""
    events: list[ChangeEvent]


class SnapshotHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: Literal["permit-snapshot/1"]
    feed_id: str
    """The feed the snapshot belongs to."""
    seq: int
    """The snapshot holds every change up to and including this sequence number, none after."""
    count: int
    """How many records follow."""
    time: float
    """When the snapshot was taken (epoch seconds)."""


class SnapshotTrailer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    count: int
    """Records sent, again: a stream cut short cannot end in a matching trailer."""
    seq: int


class GoneProblem(msgspec.Struct, frozen=True):
    """The 410 body when ``after`` is older than the retained window (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    first_seq: int
    """The oldest sequence number still retained."""
    feed_id: str


class Ed25519TrustKey(msgspec.Struct, frozen=True, forbid_unknown_fields=False, tag_field="kty", tag="OKP"):
    """One Ed25519 JWK of the trust list (WIRE-FORMAT 4); unknown JWK members are kept out."""

    crv: Literal["Ed25519"]
    x: str
    kid: str
    status: Literal["active", "retired", "revoked"]
    iss: list[str]
    alg: Literal["EdDSA"] = "EdDSA"
    use: Literal["sig"] = "sig"


class Sm2TrustKey(msgspec.Struct, frozen=True, forbid_unknown_fields=False, tag_field="kty", tag="EC"):
    """One SM2 JWK of the trust list (WIRE-FORMAT 9): the point's x and y, the user id
    (``distid``) when it is not the default."""

    crv: Literal["SM2"]
    x: str
    y: str
    kid: str
    status: Literal["active", "retired", "revoked"]
    iss: list[str]
    alg: Literal["SM2-SM3"] = "SM2-SM3"
    use: Literal["sig"] = "sig"
    distid: str | None = None


TrustKey = Ed25519TrustKey | Sm2TrustKey
"""One JWK of the trust list, by its ``kty``; the full checks are fastpath's (WIRE-FORMAT 4 and 9)."""


class TrustListDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``GET /trust-list``: a JWK Set (RFC 7517) plus the upstream's version number of it."""

    keys: list[TrustKey]
    version: int = 0


def frame(kind: bytes, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


# Decoders the client uses; strict: unknown fields and wrong types are errors.
feed_page_decoder: Final = msgspec.msgpack.Decoder(FeedPage)
feed_page_json_decoder: Final = msgspec.json.Decoder(FeedPage)
snapshot_header_decoder: Final = msgspec.msgpack.Decoder(SnapshotHeader)
snapshot_records_decoder: Final = msgspec.msgpack.Decoder(list[PermitRecord])
snapshot_trailer_decoder: Final = msgspec.msgpack.Decoder(SnapshotTrailer)
