"""The apply step's plan and its script arguments, without Redis (the writer runs them
against a real one in test_apply.py)."""

from __future__ import annotations

import zlib

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
    assert keys[5:-1] == [(layout.ssn_prefix(7) if change.kind == SSN else layout.cn_prefix(7))
                          + b"%d" % bucket_of(change.ident.encode(), POINTER.buckets) for change in plan.lookups]
    assert keys[-1] == layout.changelog  # last: the change stream
    argv = args.argv()
    assert len(argv) == 14 + 3 * 2 + 3 * 4 + 6 * 2
    assert argv[:14] == [POINTER.raw, 42, b"3", 5, 2, 4, layout.channel, args.message, V_INDEX, 1,
                         b"", args.stream_maxlen, 2, 0]
    # the id goes as its field in the bucket (keys.lookup_field: its crc32)
    assert argv[20:23] == [b"-", b"%d" % zlib.crc32(before.ssn.encode()), pn_of(1)]
    # one change entry per applied event, in seq order; the employer before only when it changed
    assert argv[32:38] == ["change", 4, pn_of(1), args.change_entries[0][3], repr(1_700_000_004.0), ""]
    assert decode_record(argv[35]) == after and argv[38:41] == ["change", 5, pn_of(2)]


def test_the_change_entries_name_the_employer_a_change_left() -> None:
    before = make_record(1, v=1)
    moved = make_record(1, v=2, emp="91110000MA00000001")
    plan = plan_page([event(4, moved), event(5, make_record(1, v=3, emp="91110000MA00000001", n="X"))], 3,
                     {pn_of(1): before})
    _keys, args = apply_call(plan, KeyLayout(), POINTER, fence=1, stored_raw=b"3", feed=b"feed-9")
    assert [(e[1], e[5]) for e in args.change_entries] == [(4, before.emp), (5, "")]
    assert args.feed == b"feed-9" and args.cursor_entry == 0


def test_trailing_no_ops_get_a_cursor_entry() -> None:
    held = {pn_of(1): make_record(1, v=1), pn_of(2): make_record(2, v=5)}
    plan = plan_page([event(6, make_record(1, v=2)), event(7, make_record(2, v=4))], 5, held)
    _keys, args = apply_call(plan, KeyLayout(), POINTER, fence=1, stored_raw=b"5")
    assert [e[1] for e in args.change_entries] == [6] and args.cursor == 7 and args.cursor_entry == 1


def test_a_cursor_only_page_publishes_nothing() -> None:
    plan = plan_page([event(6, make_record(1, v=1))], 5, {pn_of(1): make_record(1, v=1)})
    keys, args = apply_call(plan, KeyLayout(), POINTER, fence=1, stored_raw=b"5")
    assert args.message == b"" and args.records == args.lookups == 0 and len(keys) == 4
    assert args.entries == 0 and args.cursor_entry == 1  # the stream still learns where the cursor went


def test_the_counts_must_match_the_triples() -> None:
    with pytest.raises(ValueError, match="counts"):
        ApplyArgs(pointer=b"1:1", fence=1, stored_cursor=b"0", cursor=1, records=1, lookups=0, channel=b"c",
                  message=b"", v_index=V_INDEX, added=0, feed=b"", stream_maxlen=10, entries=0, cursor_entry=0,
                  record_triples=[], lookup_triples=[])
    with pytest.raises(ValueError, match="entries"):
        ApplyArgs(pointer=b"1:1", fence=1, stored_cursor=b"0", cursor=1, records=0, lookups=0, channel=b"c",
                  message=b"", v_index=V_INDEX, added=0, feed=b"", stream_maxlen=10, entries=1, cursor_entry=0,
                  record_triples=[], lookup_triples=[])


def test_apply_args_are_listed_beside_the_script_in_their_order() -> None:
    source = Path(scripts.__file__).read_text(encoding="utf-8")
    comment = source[source.index("# One page of the change feed"):source.index("APPLY = (")]
    listed = re.findall(r"^#\s+\d+\s+(\w+)", comment, flags=re.M)
    listed += re.findall(r"^#\s+then \w+ (\w+)", comment, flags=re.M)
    assert listed[-1] == "change_entries"
    assert listed == [field.name for field in dataclasses.fields(ApplyArgs)]
