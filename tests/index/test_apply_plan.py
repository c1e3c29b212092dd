"""The apply step's plan and its script arguments, without Redis (the writer runs them
against a real one in test_apply.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from verifier.index import scripts
from verifier.index.apply_plan import (
    CN,
    SSN,
    V_INDEX,
    ApplyArgs,
    LookupChange,
    apply_call,
    page_permits,
    plan_page,
)
from verifier.index.changes import ChangeMessage, decode_change
from verifier.index.keys import KeyLayout, Pointer, bucket_of
from verifier.index.records import Card, decode_record

from .conftest import event, make_record, pn_of

POINTER = Pointer(7, 1024)


def test_replayed_events_plan_nothing() -> None:
    held = {pn_of(1): make_record(1, v=2)}
    plan = plan_page([event(3, make_record(1, v=3)), event(5, make_record(1, v=4))], 5, held)
    assert (plan.duplicates, plan.applied, plan.unchanged, plan.cursor) == (2, 0, 0, 5)
    assert plan.changed == [] and plan.lookups == [] and plan.writes_nothing


def test_the_version_guard_moves_the_cursor_only() -> None:
    held = {pn_of(1): make_record(1, v=4)}
    plan = plan_page([event(6, make_record(1, v=4, n="OTHER")), event(7, make_record(1, v=3))], 5, held)
    assert (plan.unchanged, plan.applied, plan.cursor, plan.changed) == (2, 0, 7, [])
    assert not plan.writes_nothing  # the cursor still moves


def test_several_versions_in_a_page_end_with_the_highest() -> None:
    held = {pn_of(1): make_record(1, v=1), pn_of(2): None}
    # out of seq order on the page: they are taken in seq order
    events = [event(9, make_record(1, v=3)), event(8, make_record(2)), event(7, make_record(1, v=2))]
    plan = plan_page(events, 6, held)
    assert (plan.applied, plan.unchanged, plan.cursor) == (3, 0, 9)
    assert plan.changed == [pn_of(1), pn_of(2)] == page_permits(events)  # page order
    assert plan.written[pn_of(1)].v == 3 and plan.added == 1


def test_look_up_changes_follow_the_ids_gained_and_lost() -> None:
    before = make_record(1, v=1, ssn="S-OLD", cards=(Card("C-KEPT", "active"), Card("C-GONE", "active")))
    after = make_record(1, v=2, ssn="S-NEW", cards=(Card("C-KEPT", "lost"), Card("C-NEW", "active")))
    plan = plan_page([event(2, after), event(3, make_record(2))], 1, {pn_of(1): before, pn_of(2): None})
    assert plan.lookups == [
        LookupChange(b"-", SSN, "S-OLD", pn_of(1)),
        LookupChange(b"-", CN, "C-GONE", pn_of(1)),
        LookupChange(b"+", SSN, "S-NEW", pn_of(1)),
        LookupChange(b"+", CN, "C-NEW", pn_of(1)),
        LookupChange(b"+", SSN, make_record(2).ssn, pn_of(2)),
        LookupChange(b"+", CN, make_record(2).cards[0].cn, pn_of(2)),
    ]


def test_an_unusable_identifier_stops_the_plan() -> None:
    with pytest.raises(ValueError, match="unusable permit number"):
        plan_page([event(2, make_record(1, pn="WP 1"))], 1, {"WP 1": None})


def test_the_script_arguments_by_name() -> None:
    before = make_record(1, v=1)
    after = make_record(1, v=2, ssn="S-NEW")
    plan = plan_page([event(4, after), event(5, make_record(2))], 3, {pn_of(1): before, pn_of(2): None})
    layout = KeyLayout()
    keys, args = apply_call(plan, layout, POINTER, fence=42, stored_raw=b"3")
    assert (args.pointer, args.fence, args.stored_cursor, args.cursor) == (POINTER.raw, 42, b"3", 5)
    assert (args.records, args.lookups, args.added, args.v_index) == (2, 4, 1, V_INDEX)
    assert args.record_triples[0][:2] == (1, 2) and decode_record(args.record_triples[0][2]) == after
    assert args.record_triples[1][:2] == (-1, 1)
    assert decode_change(args.message) == ChangeMessage("apply", 7, 5, [pn_of(1), pn_of(2)])
    # KEYS: current, leader, meta, one per record, one bucket per look-up change, in the triples' order
    assert keys[:5] == [layout.current, layout.leader, layout.meta(7),
                        layout.record_prefix(7) + pn_of(1).encode(), layout.record_prefix(7) + pn_of(2).encode()]
    assert keys[5:] == [(layout.ssn_prefix(7) if change.kind == SSN else layout.cn_prefix(7))
                        + b"%d" % bucket_of(change.ident.encode(), POINTER.buckets) for change in plan.lookups]
    argv = args.argv()
    assert len(argv) == 10 + 3 * 2 + 3 * 4
    assert argv[:10] == [POINTER.raw, 42, b"3", 5, 2, 4, layout.channel, args.message, V_INDEX, 1]
    assert argv[16:19] == [b"-", before.ssn.encode(), pn_of(1)]


def test_a_cursor_only_page_publishes_nothing() -> None:
    plan = plan_page([event(6, make_record(1, v=1))], 5, {pn_of(1): make_record(1, v=1)})
    keys, args = apply_call(plan, KeyLayout(), POINTER, fence=1, stored_raw=b"5")
    assert args.message == b"" and args.records == args.lookups == 0 and len(keys) == 3


def test_the_counts_must_match_the_triples() -> None:
    with pytest.raises(ValueError, match="counts"):
        ApplyArgs(pointer=b"1:1", fence=1, stored_cursor=b"0", cursor=1, records=1, lookups=0, channel=b"c",
                  message=b"", v_index=V_INDEX, added=0, record_triples=[], lookup_triples=[])


def test_apply_args_are_listed_beside_the_script_in_their_order() -> None:
    source = Path(scripts.__file__).read_text(encoding="utf-8")
    comment = source[source.index("# One page of the change feed"):source.index("APPLY = (")]
    listed = re.findall(r"^#\s+\d+\s+(\w+)", comment, flags=re.M)
    listed += re.findall(r"^#\s+then \w+ (\w+)", comment, flags=re.M)
    assert listed == [field.name for field in dataclasses.fields(ApplyArgs)]
