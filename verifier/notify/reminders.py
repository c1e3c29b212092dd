"""Expiry reminders: ``permit.expiring`` at 60, 45 and 31 days before ``vt`` (configurable).

An extension must be applied for at least 30 days before the permit ends, so the
message names the last day to apply (``vt`` minus 30 days). The leading notifier
walks the live index every ``reminder_scan_interval_s``, a page of records at a
time between fan-out batches, and for each active permit asks :func:`due_reminder`
which reminder is due. Each goes to the outbox in the same script that writes its
"sent" mark (``{pvn}:reminded``: subscription and permit number -> ``"<vt> <days>"``),
so each subscription is sent it once, and never again after a restart or a second scan. A walk that missed a day
(the notifier was down) sends the reminder of the nearest threshold passed, once,
while the last day to apply has not passed; never the older ones. A cancelled
permit gets none; an extension moves ``vt`` and starts the reminders afresh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from verifier.index.records import PermitRecord

from .events import last_day_to_apply

__all__ = ["CHINA", "due_reminder", "today_in_china"]

CHINA = dt.timezone(dt.timedelta(hours=8))
"""Permit dates (vf, vt) are China Standard Time."""


def today_in_china(now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, CHINA).date()


def due_reminder(record: PermitRecord, today: dt.date, days: Sequence[int], sent: str | None) -> int | None:
    """The threshold (days before ``vt``) whose reminder is due now, or None.

    ``sent``: the permit's mark, ``"<vt> <days>"`` of the last reminder sent.
    """
    if record.status != "active" or not days:
        return None
    try:
        end = dt.date.fromisoformat(record.vt)
    except ValueError:
        return None
    if last_day_to_apply(record.vt) < today:
        return None  # too late to apply: a reminder would only alarm
    days_left = (end - today).days
    passed = [d for d in days if d >= days_left]
    if not passed:
        return None
    threshold = min(passed)
    if sent:
        sent_vt, _, sent_days = sent.partition(" ")
        if sent_vt == record.vt and sent_days.isdigit() and int(sent_days) <= threshold:
            return None  # this one (or a nearer one) went out for this end date
    return threshold


def mark(record: PermitRecord, threshold: int) -> str:
    return f"{record.vt} {threshold}"
