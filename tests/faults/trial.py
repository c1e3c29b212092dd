"""One row of the fault trial: the load, the fault's timeline, the figures, the verdict.

``with Trial(stack, "redis-kill", "Redis kill -9 ...") as t:`` makes a new API key for
the row (its audit records are found by it), runs the load while the body breaks
something, and on leaving: waits for the audit records of every answered
verification to reach the store, computes the row's figures, adds the row to the
report, and fails the test if anything that must hold did not. The row is written
even when the test fails (a failed row is a finding, not a missing line).

What every row must hold, whatever the fault (the issue: "a false VALID or a lost
audit record fails the suite"; DESIGN: "a 5xx is a bug"):

- no false VALID: a VALID where another verdict was expected, or a VALID answered
  wholly inside a window where the service cannot know the status (the row's
  ``windows``, which begin :data:`GRACE_S` after the fault so that the one
  freshness poll the README allows is not counted against it);
- no lost audit record (a row may allow a documented loss window: a worker's kill -9);
- no 5xx but a 503 problem document;
- no hang: every request answered (or refused) within the client's 10 s.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.faults.load import Answer, Load, Window, audit_check, false_valids, stable_from, summary
from tests.faults.report import add_row
from tests.faults.stack import LONG, FaultStack

GRACE_S = 1.0
"""After a fault, this long may pass before a cached status counts as a false VALID: the README's one
freshness poll (0.25 s) and 0.75 s of margin for a loaded 2-core machine. The latest VALID after the
fault is reported beside it, so the grace hides nothing."""

MARGIN = 5.0
"""Where the issue says "within N s" as a must, the test asserts N x MARGIN and reports the measure."""

RATE = 60.0 if LONG else 40.0
"""Requests per second of the load, in all."""


class Trial:
    def __init__(self, stack: FaultStack, row: str, fault: str, *, threads: int = 4, rate: float = RATE,
                 victim: bool = False) -> None:
        self.stack = stack
        self.row = row
        self.fault = fault
        self.key_id, token = stack.api_key("exit_entry", f"fault trial {row}")
        assert stack.samples is not None
        self.victim_pn, victim_code = stack.victim() if victim else ("", "")
        self.load = Load(stack.api_url, token, stack.samples, row, threads=threads, rate=rate, victim=victim_code)
        self._watcher = threading.Thread(target=self._watch_victim, daemon=True)
        self.victim_in_index: float | None = None
        """When the victim's cancellation was seen in the index (a row with a victim sets it)."""
        self.windows: list[Window] = []
        self.marks: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.fault_at: float | None = None
        self.fault_end: float | None = None
        self.lost_allowed: Any = None
        """A predicate over a lost record's Answer: a loss the row's documentation allows."""
        self.recovery_kind = "wp1-valid"
        self._t0 = time.monotonic()

    # -- the body's tools ------------------------------------------------------------

    def mark(self, name: str) -> float:
        now = time.monotonic()
        self.marks[name] = now
        return now

    def unknown(self, start: float, end: float, why: str) -> None:
        """Status is unknown from ``start`` (+ the grace) to ``end``: no VALID may be answered inside."""
        if end > start + GRACE_S:
            self.windows.append(Window(start + GRACE_S, end, why))

    def expect(self, condition: bool, failure: str, *, defect: str = "") -> None:
        """``defect``: the issue's defect this check finds while it is open, and the branch mending it."""
        if not condition:
            self.failures.append(failure + (f" [known: {defect}]" if defect else ""))

    def cancel_victim(self) -> float:
        """The upstream cancels the victim's permit now; a thread watches the index for the cancellation."""
        self.stack.cancel(self.victim_pn)
        at = self.mark("victim cancelled upstream")
        self._watcher.start()
        return at

    def _watch_victim(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.stack.index_status(self.victim_pn) == "cancelled":
                self.victim_in_index = self.mark("victim cancelled in the index")
                return
            time.sleep(0.05)

    def wait_victim_in_index(self, timeout_s: float = 60.0) -> float:
        """Until the index holds the victim's cancellation; from then (+ the grace) no VALID for its code."""
        assert self.victim_pn and self._watcher.ident is not None, "no victim cancelled in this row"
        self._watcher.join(timeout_s)
        if self.victim_in_index is None:
            raise AssertionError(f"the victim's cancellation did not reach the index within {timeout_s} s")
        return self.victim_in_index

    def answers(self) -> list[Answer]:
        return self.load.snapshot()

    def warm_up(self, count: int = 8) -> None:
        self.load.wait_answers("wp1-valid", "VALID", count)
        self.load.wait_answers("card-valid", "VALID", 2)

    def recovered(self, since: float, *, count: int = 6, timeout_s: float = 60.0) -> None:
        """Wait for ``count`` VALID answers to the valid code in a row sent after ``since`` (the service is back)."""
        deadline = time.monotonic() + timeout_s
        while True:
            mine = [a for a in self.answers() if a.kind == self.recovery_kind and a.sent >= since]
            if len(mine) >= count and all(a.result == "VALID" for a in mine[-count:]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.row}: the valid code did not answer VALID again within {timeout_s} s "
                                     f"(last: {[a.result or a.status or a.error for a in mine[-count:]]})")
            time.sleep(0.1)

    # -- the row -------------------------------------------------------------------------

    def __enter__(self) -> "Trial":
        self.load.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            self.load.stop()
        finally:
            if exc is not None:
                self.failures.append(f"the row did not finish: {type(exc).__name__}: {str(exc)[:300]}")
            row = self.figures()
            add_row(row)
        if exc is None and self.failures:
            raise AssertionError(f"{self.row}: " + "; ".join(f[:600] for f in self.failures)
                                 + f"\n(the row's figures: {_short(row)})")

    def _audit(self, answers: list[Answer]) -> dict[str, Any]:
        deadline = time.monotonic() + (30.0 if LONG else 20.0)
        settled = False
        while True:
            try:
                records = self.stack.audit_records(self.key_id)
            except Exception as exc:  # the store may be the thing a failed row left down
                records = []
                error = repr(exc)
            else:
                error = ""
            check = audit_check(answers, records)
            allowed = self.lost_allowed or (lambda _a: False)
            allowed_lookups = sum(a.kind == "permit-valid" and a.status in (200, 404, 503) and allowed(a)
                                  for a in answers)
            if all(allowed(a) for a in check["lost"]) and \
                    check["lookup_records"] + allowed_lookups >= check["lookups"]:
                # Nothing is missing but what the row allows to be lost: a moment more for stragglers.
                if not check["lost"] and check["lookup_records"] >= check["lookups"] or settled:
                    break
                settled = True
                time.sleep(2.0)
                continue
            if time.monotonic() > deadline:
                if error:
                    check["error"] = error
                break
            time.sleep(0.25)
        return check

    def figures(self) -> dict[str, Any]:
        answers = self.answers()
        figures = summary(answers)
        audit = self._audit(answers)
        lost = audit.pop("lost")
        allowed = [a for a in lost if self.lost_allowed is not None and self.lost_allowed(a)]
        unexplained = [a for a in lost if a not in allowed]
        # Look-up records name no terminal: a loss the row allows is counted by the answers it allows.
        lookups_allowed = sum(a.kind == "permit-valid" and a.status in (200, 404, 503) for a in answers
                              if self.lost_allowed is not None and self.lost_allowed(a))
        lookups_missing = max(0, audit["lookups"] - audit["lookup_records"])
        lookups_lost = max(0, lookups_missing - lookups_allowed)
        victim_after = self.victim_in_index + GRACE_S if self.victim_in_index is not None else None
        wrong = false_valids(answers, self.windows, victim_after)
        victim_figures: dict[str, Any] = {}
        if self.victim_in_index is not None:
            refused = [a.done for a in answers if a.kind == "wp1-victim" and a.result == "PERMIT_CANCELLED"]
            stale = [a.done for a in answers if a.kind == "wp1-victim" and a.result == "VALID"
                     and a.sent >= self.victim_in_index]
            victim_figures = {
                "victim_refused_after_index_s": round(min(refused) - self.victim_in_index, 3) if refused else None,
                "victim_valid_after_index": len(stale),
                "victim_last_valid_after_index_s": round(max(stale) - self.victim_in_index, 3) if stale else None,
            }
        start = self.fault_at if self.fault_at is not None else self._t0
        # The last VALID to a request sent during the fault (before its end, when it has one).
        after_start = [a for a in answers if a.result == "VALID" and a.kind in ("wp1-valid", "card-valid")
                       and a.sent >= start and (self.fault_end is None or a.sent < self.fault_end)]
        in_fault = [a for a in answers if self.fault_at is not None and self.fault_end is not None
                    and self.fault_at <= a.sent <= self.fault_end]
        recovery = None
        if self.fault_end is not None:
            stable = stable_from(answers, self.fault_end, self.recovery_kind)
            recovery = round(max(0.0, stable - self.fault_end), 2) if stable is not None else None
        row: dict[str, Any] = {
            "row": self.row,
            "fault": self.fault,
            **figures,
            "false_valid": len(wrong),
            "false_valid_examples": [vars(a) for a in wrong[:5]],
            "lost_audit": len(unexplained) + lookups_lost,
            "lost_audit_within_documented_window": len(allowed) + lookups_missing - lookups_lost,
            "duplicate_audit": audit["duplicated"],
            "answered_verifications": audit["answered"],
            "lookups": audit["lookups"],
            "lookup_records": audit["lookup_records"],
            "recovery_s": recovery,
            "during_fault": {
                "requests": len(in_fault),
                "status_unavailable": sum(a.result == "STATUS_UNAVAILABLE" for a in in_fault),
                "http_503": sum(a.status == 503 for a in in_fault),
                "no_answer": sum(a.status == 0 for a in in_fault),
                "latency_max_s": round(max((a.latency for a in in_fault), default=0.0), 3),
                "over_1_s": sum(a.latency > 1.0 for a in in_fault),
            },
            "last_valid_into_fault_s": (round(max(a.done for a in after_start) - start, 3)
                                        if self.fault_at is not None and after_start else None),
            "windows": [{"from_s": round(w.start - start, 3), "to_s": round(w.end - start, 3), "why": w.why}
                        for w in self.windows],
            "marks_s": {k: round(v - start, 3) for k, v in self.marks.items()},
            "long": LONG,
            **victim_figures,
            # The notifier only has to live through the faults (it meets them in the index's Redis).
            "notifier_running": bool(self.stack.notify is not None and self.stack.notify.running),
            "sync_jobs_running": len(self.stack.live_syncs()),
            **self.extra,
        }
        if audit.get("error"):
            row["audit_error"] = audit["error"]
        # What every row must hold.
        self.expect(not wrong, f"{len(wrong)} false VALID (first: {[vars(a) for a in wrong[:2]]})")
        self.expect(not unexplained and not lookups_lost,
                    f"{len(unexplained)} verifications and {lookups_lost} look-ups lost their audit record "
                    f"(first: {[vars(a) for a in unexplained[:2]]})")
        self.expect(figures["http_5xx_not_503_problem"] == 0,
                    f"{figures['http_5xx_not_503_problem']} 5xx answers other than a 503 problem document")
        self.expect(figures["hangs"] == 0, f"{figures['hangs']} requests hung (no answer within 10 s)")
        if victim_figures:
            self.notes.append(f"a permit cancelled during the fault: its code refused "
                              f"{victim_figures['victim_refused_after_index_s']} s after the cancellation reached the "
                              f"index, {victim_figures['victim_valid_after_index']} VALID after that")
        row["notes"] = "; ".join(self.notes)
        row["passed"] = not self.failures
        row["failures"] = list(self.failures)
        return row


def _short(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its long lists, for an assertion message."""
    return {k: v for k, v in row.items() if not isinstance(v, (list, dict)) or k in ("during_fault", "no_answer")}
