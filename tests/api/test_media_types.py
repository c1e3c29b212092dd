"""Bodies are JSON, said so, once per key: 415 for any other media type, 400 for a key given twice.

Every operation of the OpenAPI document with a request body is in :data:`BODIES` (a
test fails if one is missing), each with the role that may call it and a body its
schema takes; every one is tried with the media types a client may wrongly send.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.conftest import PERMITS, World
from verifier.api.body import duplicate_key

VALID = PERMITS["valid"]

# (method, path) -> (role, body). Bodies the schema takes (the answer may still be a
# 404 or a 422: what matters here is that the body was read as what it says it is).
BODIES: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/v1/verify/qr"): ("exit_entry", {"qr": "@wp1", "terminal": "T-1"}),
    ("POST", "/v1/verify/qr/batch"): ("exit_entry", {"codes": ["@wp1"], "terminal": "T-1"}),
    ("POST", "/v1/verify/card"): ("exit_entry", {"certificate": "AAAA", "challenge": "AAAA", "signature": "AAAA",
                                                 "terminal": "T-1"}),
    ("POST", "/v1/verify/manual"): ("exit_entry", {"pn": VALID.pn, "dob": VALID.dob, "terminal": "T-1"}),
    ("POST", "/v1/permits/lookup"): ("admin", {"by": "pn", "ids": [VALID.pn]}),
    ("POST", "/v1/holder/session"): ("essc_platform", {"code": "@es1"}),
    ("POST", "/v1/holder/match"): ("essc_platform", {"name": VALID.n, "dob": VALID.dob, "pn": VALID.pn}),
    ("POST", "/v1/webhooks"): ("admin", {"url": "http://127.0.0.1:9/hook", "events": ["*"]}),
    ("PUT", "/v1/webhooks/settings"): ("essc_platform", {"verified_notices": True}),
    ("POST", "/v1/webhooks/{sub_id}/replay"): ("admin", {"since_seq": 0}),
    ("POST", "/v1/admin/webhooks/dead-letters/resend"): ("admin", {"ids": []}),
    ("POST", "/v1/admin/terminals"): ("admin", {"organisation": "Airport", "id": "T-1", "name": "Desk 1",
                                                "place": "Hall 2"}),
}

NOT_JSON = {
    "text/plain": "text/plain",
    "text/plain-utf8": "text/plain;charset=UTF-8",  # what a browser's fetch() sends for a string body
    "xml": "application/xml",
    "multipart": "multipart/form-data; boundary=x0x0",
    "form": "application/x-www-form-urlencoded",
    "octet-stream": "application/octet-stream",
    "json-latin1": "application/json; charset=iso-8859-1",
    "json-utf16": "application/json; charset=utf-16",
    "json-other-parameter": "application/json; profile=x",
    "jsonx": "application/jsonx",
    "json-seq": "application/json-seq",
    "empty": "",
}
JSON = {
    "plain": "application/json",
    "charset": "application/json; charset=utf-8",
    "charset-upper": "Application/JSON;Charset=\"UTF-8\"",
    "structured": "application/vnd.partner.permit+json",
    "structured-charset": "application/merge-patch+json; charset=utf-8",
}


def _body(world: World, body: Any) -> Any:
    """``body`` with its placeholders replaced by fresh codes."""
    def fill(value: Any) -> Any:
        if value == "@wp1":
            return world.wp1(VALID)
        if value == "@es1":
            return world.es1(VALID)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value
    return fill(body)


def _url(path: str) -> str:
    return path.replace("{sub_id}", "wh_missing")


def _send(client: Any, world: World, method: str, path: str, role: str, content: bytes,
          content_type: str | None) -> Any:
    headers = world.headers(role)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.request(method, _url(path), content=content, headers=headers)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document = response.json()
    assert document["status"] == status
    return document  # type: ignore[no-any-return]


def test_every_operation_with_a_body_is_tried(client: Any) -> None:
    schema = client.get("/schema/openapi.json").json()
    with_body = {(method.upper(), path) for path, item in schema["paths"].items()
                 for method, operation in item.items() if isinstance(operation, dict) and "requestBody" in operation}
    assert with_body == set(BODIES)
    for path, item in schema["paths"].items():  # and each says it takes JSON only
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                assert set(operation["requestBody"]["content"]) == {"application/json"}, path


@pytest.mark.parametrize("operation", list(BODIES), ids=[f"{m} {p}" for m, p in BODIES])
def test_a_body_that_is_not_said_to_be_json_is_415(client: Any, world: World, operation: tuple[str, str]) -> None:
    method, path = operation
    role, body = BODIES[operation]
    raw = msgspec.json.encode(_body(world, body))
    for name, content_type in {**NOT_JSON, "none": None}.items():
        document = _problem(_send(client, world, method, path, role, raw, content_type), 415)
        assert document["type"] == "/problems/unsupported-media-type", name
        assert "application/json" in document["detail"], name
    response = _send(client, world, method, path, role, raw, None)
    assert response.headers["accept-post"] == "application/json"
    for name, content_type in JSON.items():
        response = _send(client, world, method, path, role, msgspec.json.encode(_body(world, body)), content_type)
        assert response.status_code not in (400, 415), (name, response.text)


@pytest.mark.parametrize("operation", list(BODIES), ids=[f"{m} {p}" for m, p in BODIES])
def test_a_key_given_twice_is_400_naming_it(client: Any, world: World, operation: tuple[str, str]) -> None:
    method, path = operation
    role, body = BODIES[operation]
    filled = _body(world, body)
    for key, value in filled.items():
        # the same object with `key` again at the end, once as it was and once spelled with an escape
        raw = msgspec.json.encode(filled)[:-1] + b',"' + key.encode() + b'":' + msgspec.json.encode(value) + b"}"
        escaped = raw.replace(b'"' + key.encode() + b'":', b'"\\u' + b"%04x" % ord(key[0]) + key[1:].encode() + b'":', 1)
        for text in (raw, escaped):
            document = _problem(_send(client, world, method, path, role, text, "application/json"), 400)
            assert document["errors"][0]["key"] == key, document
            assert key in document["detail"]


def test_a_valid_code_sent_as_text_is_not_a_verdict(client: Any, world: World) -> None:
    """The defect of the issue: text/plain, XML, multipart and no type at all were read as JSON."""
    raw = msgspec.json.encode({"qr": world.wp1(VALID), "terminal": "T-1"})
    for content_type in ("text/plain", "application/xml", "multipart/form-data; boundary=b", None):
        response = _send(client, world, "POST", "/v1/verify/qr", "exit_entry", raw, content_type)
        assert response.status_code == 415, response.text
        assert "result" not in response.json()
    ok = _send(client, world, "POST", "/v1/verify/qr", "exit_entry", raw, "application/json; charset=utf-8")
    assert ok.json()["result"] == "VALID"
    # the last `qr` won before: a good code then a bad one (or the other way round) is refused
    twice = raw[:-1] + b',"qr":"WP1:NOTACODE"}'
    assert _send(client, world, "POST", "/v1/verify/qr", "exit_entry", twice, "application/json").status_code == 400


def test_two_content_types_are_refused(client: Any, world: World) -> None:
    raw = msgspec.json.encode({"qr": world.wp1(VALID), "terminal": "T-1"})
    headers = [("authorization", f"Bearer {world.token['exit_entry']}"), ("content-type", "application/json"),
               ("content-type", "text/plain")]
    # the client joins them into one header ("application/json, text/plain"): not a media type
    _problem(client.post("/v1/verify/qr", content=raw, headers=headers), 415)


def test_deep_nesting_and_long_numbers_are_400_not_500(client: Any, world: World) -> None:
    headers = {**world.headers("exit_entry"), "Content-Type": "application/json"}
    for raw in (b'{"qr": "WP1:X", "terminal": "T", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                b'{"qr": "WP1:X", "terminal": "T", "receipt": ' + b"1" * 5000 + b"}"):
        _problem(client.post("/v1/verify/qr", content=raw, headers=headers), 400)


# --- duplicate_key on its own: against Python's json with a hook, as the oracle ----------------

def _oracle(raw: bytes) -> str | None:
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        for i, key in enumerate(keys):
            if key in keys[:i] and not found:
                found.append(key)
        return dict(pairs)

    json.loads(raw, object_pairs_hook=hook)
    return found[0] if found else None


_keys = st.text(alphabet=st.sampled_from('ab:" \\,{}[]\u00e9'), max_size=3)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _keys,
    lambda children: st.lists(children, max_size=4)
    | st.lists(st.tuples(_keys, children), max_size=4),  # an object as pairs: keys may repeat
    max_leaves=12,
)


def _encode(value: Any, escape: bool) -> str:
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=escape)}: {_encode(v, escape)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v, escape) for v in value) + "]"
    return json.dumps(value, ensure_ascii=escape)


@settings(max_examples=400, deadline=None)
@given(value=_json, escape=st.booleans())
def test_duplicate_key_agrees_with_an_object_by_object_check(value: Any, escape: bool) -> None:
    raw = _encode(value, escape).encode()
    found = duplicate_key(raw)
    expected = _oracle(raw)
    assert (found is None) == (expected is None), raw
    if found is not None:
        assert found == expected, raw


@pytest.mark.parametrize(("raw", "key"), [
    (b'{"a": 1, "a": 2}', "a"),                                  # top level
    (b'{"a": {"b": 1, "b": 2}}', "b"),                           # nested object
    (b'{"a": [{"k": 1, "k": 2}]}', "k"),                         # object in an array
    (b'{"a": "x", ":abc": 1, ":abc": 2}', ":abc"),               # a key that starts with a colon
    (b'{"\\u0061": 1, "a": 2}', "a"),                            # the same key, once escaped
    (b'{"a": {"x": 1}, "b": {"x": 2}}', None),                   # one name in two objects
    (b'[{"a": 1}, {"a": 1}]', None),                             # ... in two array items
    (b'{"a": "\\"a\\": 1"}', None),                              # a key-like string in a value
    (b'{"a": "a:", "b": ":"}', None),
])
def test_duplicate_key_cases(raw: bytes, key: str | None) -> None:
    assert duplicate_key(raw) == key
