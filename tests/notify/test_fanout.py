"""The fan-out's plan (no Redis): who hears of what, nothing twice, and every gap said."""

from __future__ import annotations

import logging

import orjson
import pytest

from verifier.index.change_stream import ChangeEntry
from verifier.notify import events
from verifier.notify.fanout import Audience, Cursor, plan_batch
from verifier.notify.store import Subscription

from .conftest import EMPLOYER_A, EMPLOYER_B, permit


def sub(sub_id: str, role: str = "admin", employers: tuple[str, ...] = (), events_: tuple[str, ...] = ("*",),
        created_ms: int = 0, key_id: str = "k1") -> Subscription:
    return Subscription(id=sub_id, key_id=key_id, role=role, url="https://x.example/", events=events_,
                        employers=employers, fields=("pn", "status", "emp"), description="", created_ms=created_ms,
                        status="active", secret="whsec_AAAA", signing_key="whsk_AAAA")


def change(seq: int, c0: int, i: int = 1, kind: str = "change", feed: str = "F", ms: int = 1000, **record) -> ChangeEntry:  # type: ignore[no-untyped-def]
    previous = record.pop("previous", "")
    return ChangeEntry(f"{ms}-{seq}", kind, feed, seq=seq, pn=permit(i).pn, record=permit(i, v=seq, **record),  # type: ignore[arg-type]
                       time=1.0, previous_employer=previous, cursor_before=c0)


def switch(seq: int, feed: str = "F") -> ChangeEntry:
    return ChangeEntry("1-0", "switch", feed, seq=seq, generation=2)


def cursor_entry(c0: int, c1: int, feed: str = "F") -> ChangeEntry:
    return ChangeEntry("1-0", "cursor", feed, cursor_before=c0, cursor_after=c1)


EVERYONE = Audience([sub("wh_admin")])


def test_changes_past_the_cursor_become_messages() -> None:
    plan = plan_batch([change(11, 10), change(12, 10, i=2)], Cursor("F", 10), EVERYONE, now=5.0)
    assert plan.cursor == Cursor("F", 12) and plan.changes == 2 and not plan.gaps
    assert [(m.sub, m.key, m.type, m.webhook_id) for m in plan.messages] == [
        ("wh_admin", permit(1).pn, "permit.changed", events.change_id("F", 11)),
        ("wh_admin", permit(2).pn, "permit.changed", events.change_id("F", 12))]


def test_a_batch_read_again_plans_nothing() -> None:
    plan = plan_batch([change(11, 10), change(12, 10)], Cursor("F", 12), EVERYONE, now=5.0)
    assert plan.messages == [] and plan.cursor == Cursor("F", 12) and plan.changes == 0


def test_the_first_start_takes_the_stream_as_it_finds_it() -> None:
    plan = plan_batch([change(501, 500)], None, EVERYONE, now=5.0)
    assert plan.cursor == Cursor("F", 501) and not plan.gaps and len(plan.messages) == 1


def test_a_cursor_entry_covers_the_no_ops() -> None:
    plan = plan_batch([change(11, 10), cursor_entry(10, 14), change(15, 14)], Cursor("F", 10), EVERYONE, now=5.0)
    assert not plan.gaps and plan.cursor == Cursor("F", 15)


def test_a_trimmed_stretch_is_a_gap(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="verifier.notify"):
        plan = plan_batch([change(31, 30)], Cursor("F", 12), EVERYONE, now=5.0)
    [gap] = plan.gaps
    assert (gap.first, gap.last, gap.feed_reset) == (13, 30, False)
    assert [m.type for m in plan.messages] == [events.GAP, "permit.changed"]
    data = orjson.loads(plan.messages[0].body)["data"]
    assert (data["first_seq"], data["last_seq"]) == (13, 30)
    [line] = [r.getMessage() for r in caplog.records]
    assert "GAP" in line and "13 to 30" in line and permit(1).pn not in line


def test_a_resync_past_the_cursor_is_a_gap_and_one_at_it_is_not() -> None:
    plan = plan_batch([switch(40)], Cursor("F", 12), EVERYONE, now=5.0)
    assert [(g.first, g.last) for g in plan.gaps] == [(13, 40)] and plan.cursor == Cursor("F", 40)
    assert plan_batch([switch(12)], Cursor("F", 12), EVERYONE, now=5.0).gaps == []
    # after a FLUSHALL the sync job reloads at the upstream's head: the stream starts with the switch
    assert plan_batch([switch(10), change(11, 10)], Cursor("F", 12), EVERYONE, now=5.0).messages == []


def test_a_reset_feed_is_a_gap_of_unknown_start() -> None:
    plan = plan_batch([switch(3, feed="G"), change(4, 3, feed="G")], Cursor("F", 900), EVERYONE, now=5.0)
    [gap] = plan.gaps
    assert (gap.first, gap.last, gap.feed_reset) == (None, 3, True)
    assert plan.cursor == Cursor("G", 4) and plan.messages[-1].type == "permit.changed"


def test_partners_hear_of_their_employers_only() -> None:
    audience = Audience([sub("wh_a", "partner", (EMPLOYER_A,)), sub("wh_b", "partner", (EMPLOYER_B,)),
                         sub("wh_ab", "partner", (EMPLOYER_A, EMPLOYER_B))])
    plan = plan_batch([change(11, 10), change(12, 10, i=2, emp=EMPLOYER_B),
                       change(13, 10, i=3, emp=EMPLOYER_B, previous=EMPLOYER_A)], Cursor("F", 10), audience, now=5.0)
    heard = {(m.sub, m.key): orjson.loads(m.body)["data"].get("employer_change", "") for m in plan.messages}
    assert heard == {
        ("wh_a", permit(1).pn): "", ("wh_ab", permit(1).pn): "",
        ("wh_b", permit(2).pn): "", ("wh_ab", permit(2).pn): "",
        ("wh_b", permit(3).pn): "joined", ("wh_a", permit(3).pn): "left",
        ("wh_ab", permit(3).pn): "",  # both employers are its own: a plain change
    }


def test_event_filters_and_creation_time() -> None:
    audience = Audience([sub("wh_cancel", events_=("permit.cancelled",)), sub("wh_late", created_ms=5000)])
    plan = plan_batch([change(11, 10, ms=1000), change(12, 10, kind="cancel", ms=1000, status="cancelled"),
                       change(13, 10, ms=6000)], Cursor("F", 10), audience, now=5.0)
    assert [(m.sub, m.type) for m in plan.messages] == [("wh_cancel", "permit.cancelled"), ("wh_late", "permit.changed")]


def test_revoked_owners_hear_nothing() -> None:
    audience = Audience([sub("wh_1", key_id="gone")], revoked_owners={"gone"})
    assert plan_batch([change(11, 10)], Cursor("F", 10), audience, now=5.0).messages == []
