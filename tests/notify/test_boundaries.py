"""Who may import whom (DESIGN "Which part may use which"): the notifier meets the API and the
sync job only in Redis and the index module; the API uses only the notifications' contract."""

from __future__ import annotations

from pathlib import Path

from tests.sync.test_boundaries_and_progress import _imports, _offenders

REPO = Path(__file__).resolve().parents[2]
CONTRACT = ("verifier.notify.events", "verifier.notify.signing", "verifier.notify.urls", "verifier.notify.store")


def test_the_notifier_never_imports_the_api_the_sync_job_or_the_simulator() -> None:
    files = sorted((REPO / "verifier" / "notify").glob("*.py"))
    assert len(files) > 8
    assert _offenders(files, ("verifier.api", "verifier.sync", "verifier.upstream", "verifier.run")) == {}


def test_the_api_uses_only_the_notifications_contract() -> None:
    files = sorted((REPO / "verifier" / "api").rglob("*.py"))
    used = {name for f in files for name in _imports(f) if name.startswith("verifier.notify")}
    assert used and used <= set(CONTRACT) | {"verifier.notify"}, used


def test_the_contract_imports_nothing_of_the_notifier_process() -> None:
    files = [REPO / (name.replace(".", "/") + ".py") for name in CONTRACT]
    imported = {name for f in files for name in _imports(f) if name.startswith("verifier.notify")}
    assert imported <= set(CONTRACT), imported
