"""What an answer must be, for every request the load tests make: one place for both tools.

The open-model generator (``generator.py``) and the closed-loop Locust scenarios
(``locustfile.py``) send the same requests and judge the answers with these
functions. Each returns None when the answer is right, or a short failure message
that names what was wrong (it becomes the error text in the report): never a code,
name or number of a person.
"""

from __future__ import annotations

from typing import Any

import orjson


def _http_failure(status: int, content: bytes) -> str:
    detail = ""
    try:
        problem = orjson.loads(content)
        if isinstance(problem, dict):
            detail = str(problem.get("title") or problem.get("detail") or "")[:80]
    except orjson.JSONDecodeError:
        pass
    return f"HTTP {status}" + (f" {detail}" if detail else "")


def json_answer(status: int, content: bytes, ok: tuple[int, ...] = (200,)) -> tuple[Any, str | None]:
    """The decoded JSON body of a successful answer, or a failure message."""
    if status not in ok:
        return None, _http_failure(status, content)
    try:
        return orjson.loads(content), None
    except orjson.JSONDecodeError:
        return None, f"HTTP {status} with a body that is not JSON"


def verdict_result(status: int, content: bytes) -> tuple[str | None, str | None]:
    """(the verdict's result code, None) or (None, failure) when no verdict came back."""
    answer, failure = json_answer(status, content)
    if failure is not None:
        return None, failure
    if not isinstance(answer, dict) or not isinstance(answer.get("result"), str):
        return None, "an answer without a verdict"
    return answer["result"], None


def verdict_failure(status: int, content: bytes, expect: str) -> str | None:
    """A verdict is HTTP 200 whatever its code: the code must be the one the data expects."""
    result, failure = verdict_result(status, content)
    if failure is not None:
        return failure
    return None if result == expect else f"expected {expect}, got {result}"


def found_failure(status: int, content: bytes, asked: int, expect_found: int) -> str | None:
    """A bulk look-up: found + missing account for every id asked, and found is what this key may see."""
    answer, failure = json_answer(status, content)
    if failure is not None:
        return failure
    try:
        found, missing = len(answer["found"]), len(answer["missing"])
    except (KeyError, TypeError):
        return "a look-up answer without found and missing"
    if found + missing != asked:
        return f"found + missing = {found + missing}, not the {asked} ids asked"
    return None if found == expect_found else f"expected {expect_found} found, got {found}"


def permit_failure(status: int, content: bytes, pn: str) -> str | None:
    """A permit read: the answer is about the permit asked for (``{"permit": {...}}`` or the permit itself)."""
    answer, failure = json_answer(status, content)
    if failure is not None:
        return failure
    permit = answer.get("permit", answer) if isinstance(answer, dict) else None
    if not isinstance(permit, dict) or "pn" not in permit:
        return "an answer without a permit"
    return None if permit["pn"] == pn else "another permit came back"


def problem_failure(status: int, content_type: str, content: bytes) -> str | None:
    """Bad input must get a clear 4xx RFC 9457 problem document: not a 2xx, not a 5xx."""
    if not 400 <= status < 500:
        return f"expected a 4xx problem, got HTTP {status}"
    if "application/problem+json" not in content_type:
        return f"HTTP {status} without a problem document"
    return None
