"""What messages say, and the contracts this package shares with the rest (held together here)."""

from __future__ import annotations

import datetime as dt
import typing

import msgspec
import orjson
import pytest

from verifier.api.audit.log import AUDIT_STREAM
from verifier.api.auth.keys import KEY_PREFIX
from verifier.api.auth.roles import WEBHOOK_SUBSCRIBERS, Role, permit_fields
from verifier.api.verdicts.views import view_spec
from verifier.index.change_stream import ChangeEntry
from verifier.index.records import Card, EventType
from verifier.notify import events, notifier, store
from verifier.notify.reminders import due_reminder

from .conftest import EMPLOYER_A, EMPLOYER_B, permit


def test_every_kind_of_change_the_feed_has_is_an_event_type() -> None:
    assert set(events.CHANGE_TYPES) == set(typing.get_args(EventType))
    assert len(set(events.CHANGE_TYPES.values())) == len(events.CHANGE_TYPES)


def test_the_roles_that_may_subscribe_are_the_apis() -> None:
    assert set(events.SUBSCRIBABLE) == {r.value for r in WEBHOOK_SUBSCRIBERS}
    assert events.VERIFIED in events.SUBSCRIBABLE["essc_platform"]
    assert events.VERIFIED not in events.SUBSCRIBABLE["partner"]


def test_the_names_shared_with_the_api_agree() -> None:
    assert store.API_KEY_PREFIX == KEY_PREFIX
    assert notifier.AUDIT_STREAM == AUDIT_STREAM


@pytest.mark.parametrize("role", [r for r in Role])
@pytest.mark.parametrize("full", [False, True])
def test_a_permit_in_a_message_is_what_a_look_up_shows(role: Role, full: bool) -> None:
    if full and role != Role.PARTNER:
        return
    records = [permit(1), permit(2, cards=(Card("C1", "lost"), Card("C2", "active"))), permit(3, cards=(), ssn=None),
               permit(4, cards=(Card("C9", "lost"),), status="cancelled")]
    fields = permit_fields(role, full)
    for record in records:
        api = msgspec.to_builtins(view_spec(role, full).of_record(record))
        assert events.permit_view(record, fields) == api


def entry(record, kind="change", seq=5, previous=""):  # type: ignore[no-untyped-def]
    return ChangeEntry("1-0", kind, "feed", seq=seq, pn=record.pn, record=record, time=1_800_000_000.0,
                       previous_employer=previous)


def test_a_change_body() -> None:
    record = permit(1, cards=(Card("C1", "replaced"), Card("C2", "active")))
    body = orjson.loads(events.change_body(entry(record, "card_replaced"), ("pn", "status", "cn", "card_status")))
    assert body == {"type": "card.replaced", "timestamp": "2027-01-15T08:00:00.000Z",
                    "data": {"pn": record.pn, "seq": 5,
                             "permit": {"pn": record.pn, "status": "active", "cn": "C2", "card_status": "active"},
                             "card": {"cn": "C1", "status": "replaced"}}}
    # without cn among its fields, a key learns nothing of the cards
    assert "card" not in orjson.loads(events.change_body(entry(record, "card_replaced"), ("pn", "status")))["data"]


def test_a_partner_the_permit_left_learns_nothing_but_its_number() -> None:
    record = permit(1, emp=EMPLOYER_B)
    body = orjson.loads(events.change_body(entry(record, previous=EMPLOYER_A), ("pn", "emp", "vt"), "left"))
    assert body["data"] == {"pn": record.pn, "seq": 5, "employer_change": "left", "permit": {"pn": record.pn}}
    admin = orjson.loads(events.change_body(entry(record, previous=EMPLOYER_A), ("pn", "emp")))
    assert admin["data"]["previous_emp"] == EMPLOYER_A and admin["data"]["permit"]["emp"] == EMPLOYER_B


def test_webhook_ids_are_stable_and_dotless() -> None:
    assert events.change_id("feed-1", 7) == events.change_id("feed-1", 7) != events.change_id("feed-2", 7)
    ids = [events.change_id("sim.1", 7), events.expiring_id("WP1", "2027-01-01", 60), events.verified_id("17-3", 2),
           events.gap_id("f", 1, 9)]
    assert all("." not in i and i.startswith("msg_") for i in ids)
    assert "WP1" not in events.expiring_id("WP1", "2027-01-01", 60)  # an id says nothing of the permit


def test_an_expiry_reminder_names_the_last_day_to_apply() -> None:
    record = permit(1, vt="2027-03-31")
    body = orjson.loads(events.expiring_body(record, 60, 60, ("pn", "vt"), 1_800_000_000.0))
    assert body["type"] == "permit.expiring"
    assert body["data"] == {"pn": record.pn, "vt": "2027-03-31", "days_before_end": 60, "days_left": 60,
                            "last_day_to_apply": "2027-03-01", "permit": {"pn": record.pn, "vt": "2027-03-31"}}
    assert "seq" not in body["data"]  # reminders are not changes of the feed


TODAY = dt.date(2027, 1, 1)
DAYS = (60, 45, 31)


def ends_in(days: int, **changes):  # type: ignore[no-untyped-def]
    return permit(1, vt=(TODAY + dt.timedelta(days=days)).isoformat(), **changes)


@pytest.mark.parametrize(("left", "sent", "due"), [
    (61, None, None),           # not yet
    (60, None, 60),
    (59, None, 60),             # a day missed (the notifier was down): still the 60-day one
    (50, "vt 60", 60),          # (another vt's mark does not count: see below)
    (45, None, 45),
    (40, None, 45),             # the nearest passed threshold only, never the 60-day one as well
    (31, None, 31),
    (30, None, 31),             # the last day to apply is today: still worth saying
    (29, None, None),           # too late to apply
    (0, None, None),
])
def test_which_reminder_is_due(left: int, sent: str | None, due: int | None) -> None:
    record = ends_in(left)
    if sent is not None:
        sent = sent.replace("vt", "2020-01-01")
    assert due_reminder(record, TODAY, DAYS, sent) == due


def test_a_reminder_is_sent_once_for_its_end_date() -> None:
    record = ends_in(58)
    assert due_reminder(record, TODAY, DAYS, f"{record.vt} 60") is None
    assert due_reminder(ends_in(44), TODAY, DAYS, f"{ends_in(44).vt} 60") == 45
    assert due_reminder(ends_in(44), TODAY, DAYS, f"{ends_in(44).vt} 45") is None
    extended = ends_in(400)
    assert due_reminder(extended, TODAY, DAYS, f"{record.vt} 31") is None  # extended: nothing until 60 days before


def test_no_reminder_for_a_cancelled_permit() -> None:
    assert due_reminder(ends_in(60, status="cancelled"), TODAY, DAYS, None) is None


def test_configured_days() -> None:
    assert due_reminder(ends_in(90), TODAY, (90,), None) == 90
    assert due_reminder(ends_in(60), TODAY, (), None) is None
