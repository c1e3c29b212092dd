"""Change notifications: what the sync job publishes and API workers listen to.

Every applied page and every generation switch is published, from inside the same
Lua script that makes the change (so no change goes unannounced and no announcement
precedes its change), on the channel ``<namespace>:changes`` (:data:`CHANGES_CHANNEL`
for the default namespace). In a Redis Cluster a plain PUBLISH reaches subscribers on
every node.

Message: a msgpack array ``[kind, generation, seq, permit_numbers]``

- ``kind`` ``"apply"``: the permits in ``permit_numbers`` changed (drop their cached
  entries); ``seq`` is the index's cursor after the change.
- ``kind`` ``"switch"``: a full resync switched generation ``generation`` in; drop
  every cached entry (``permit_numbers`` is empty).

Decode with :func:`decode_change`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .keys import DEFAULT_NAMESPACE, KeyLayout

__all__ = ["CHANGES_CHANNEL", "ChangeMessage", "changes_channel", "decode_change", "encode_change"]

CHANGES_CHANNEL: str = f"{DEFAULT_NAMESPACE}:changes"
"""The pub/sub channel of the default namespace ("pv:changes")."""


def changes_channel(namespace: str = DEFAULT_NAMESPACE) -> str:
    return KeyLayout(namespace).channel.decode()


class ChangeMessage(msgspec.Struct, array_like=True, frozen=True):
    kind: Literal["apply", "switch"]
    generation: int
    seq: int
    permit_numbers: list[str]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ChangeMessage)


def encode_change(message: ChangeMessage) -> bytes:
    return _encoder.encode(message)


def decode_change(data: bytes) -> ChangeMessage:
    """Raises ``msgspec.DecodeError`` on anything that is not a change message."""
    return _decoder.decode(data)
