"""The fault trial's report: one row per fault, written as JSON, rendered as the README's table.

Every test of ``tests/faults/`` adds its row (:func:`add_row`); at the end of the run
the rows go to ``$FAULTS_REPORT`` (default: ``.state/faults/report.json`` under the
repository), and the path is printed. ``python -m tests.faults.report FILE``
prints the README's "Fault trial" table from such a file.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

import orjson

ROWS: list[dict[str, Any]] = []

COLUMNS = ("fault", "requests", "5xx", "false VALID", "lost audit", "recovery", "measured beside it")


def add_row(row: dict[str, Any]) -> None:
    ROWS[:] = [r for r in ROWS if r["row"] != row["row"]] + [row]


def write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "issue": 11,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "long": os.environ.get("FAULTS_LONG", "") not in ("", "0"),
        "machine": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version()},
        "rows": ROWS,
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f} s"
    return str(value)


def _five(row: dict[str, Any]) -> str:
    total, problems = row.get("http_5xx", 0), row.get("http_503", 0)
    if not total:
        return "0"
    other = row.get("http_5xx_not_503_problem", 0)
    return f"{total} ({problems} × 503 problem" + (f", **{other} other**)" if other else ")")


def render(document: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in document["rows"]:
        status = "" if row.get("passed", True) else " **(fails: " + "; ".join(row.get("failures", [])) + ")**"
        lines.append("| " + " | ".join([
            row["fault"] + status,
            _cell(row.get("requests")),
            _five(row),
            _cell(row.get("false_valid")),
            _cell(row.get("lost_audit")) + (f" (+{row['lost_audit_within_documented_window']} in the documented "
                                            "crash window)" if row.get("lost_audit_within_documented_window") else ""),
            _cell(row.get("recovery_s")),
            row.get("notes", ""),
        ]) + " |")
    machine = document.get("machine", {})
    lines.append("")
    lines.append(f"({'FAULTS_LONG=1, ' if document.get('long') else ''}{machine.get('cpus')} cores, "
                 f"load average {machine.get('load_average')}, written {document.get('written_at')})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.faults.report REPORT.json", file=sys.stderr)
        return 2
    print(render(orjson.loads(Path(args[0]).read_bytes())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
