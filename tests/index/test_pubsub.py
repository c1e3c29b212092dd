"""Every applied change is published, after it is visible, and only once."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from verifier.index import CHANGES_CHANNEL, SyncPermitIndex, changes_channel, decode_change
from verifier.index.changes import ChangeMessage, encode_change

from .conftest import Leader, event, make_record, pn_of

pytestmark = pytest.mark.integration


def _messages(pubsub: Any) -> list[ChangeMessage]:
    out = []
    while (message := pubsub.get_message(timeout=0.3)) is not None:
        if message["type"] == "message":
            out.append(decode_change(message["data"]))
    return out


def test_channel_name() -> None:
    assert CHANGES_CHANNEL == "pv:changes" == changes_channel()
    assert changes_channel("test") == "test:changes"


def test_message_round_trip_and_garbage() -> None:
    message = ChangeMessage("apply", 3, 17, ["WP1", "WP2"])
    assert decode_change(encode_change(message)) == message
    with pytest.raises(msgspec.DecodeError):
        decode_change(b"\x93\xa5apply")


def test_apply_publishes_changed_permits_once(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(i) for i in range(5)], seq=1)
    pubsub = redis_sync.pubsub()
    pubsub.subscribe(CHANGES_CHANNEL)
    page = [event(2, make_record(1, v=2, status="cancelled"), "cancel"),
            event(3, make_record(2, v=2, cards=()), "card_lost"),
            event(4, make_record(3, v=1))]  # version guard: not a change
    leader.apply(page)
    leader.apply(page, cursor_before=1)  # a replay: nothing new, nothing published
    messages = _messages(pubsub)
    pubsub.close()
    generation = leader.writer.state().generation
    assert messages == [ChangeMessage("apply", generation or 0, 4, [pn_of(1), pn_of(2)])]


def test_a_subscriber_sees_the_change_when_the_message_arrives(leader: Leader, redis_sync: Any) -> None:
    leader.load([make_record(1)], seq=1)
    pubsub = redis_sync.pubsub()
    pubsub.subscribe(CHANGES_CHANNEL)
    reader = SyncPermitIndex(redis_sync)
    leader.apply([event(2, make_record(1, v=2, status="cancelled"), "cancel")])
    [message] = _messages(pubsub)
    pubsub.close()
    # Published by the same script that wrote the record: reading on receipt sees it.
    assert all(reader.get(pn).status == "cancelled" for pn in message.permit_numbers)
