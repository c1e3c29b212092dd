"""A tiny webhook receiver: ``verifier notify receiver`` (the demo runs one).

It checks each delivery's Standard Webhooks signatures (``v1`` with the secret,
``v1a`` with the public key, both read from ``--secret-file``, a JSON object
``{"secret": "whsec_...", "public_key": "whpk_..."}`` re-read when it changes),
deduplicates by ``webhook-id``, answers 204 and prints one line per delivery: the
time, the event type, the change's sequence number, the webhook id, which
signatures matched and how long after the event it arrived. No permit number or
other personal data is printed. ``--record FILE`` also appends one JSON line per
delivery (type, seq, event time, arrival time) for measurements.

What an HR platform's receiver should do is the same: verify the signature over the
raw body before parsing it, refuse timestamps more than 5 minutes off, deduplicate
by ``webhook-id``, order by ``data.seq`` per permit, answer 2xx fast.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, TextIO

from verifier.lib.logging import json_mode, notice

from .signing import SignatureError, verify

log = logging.getLogger("verifier.notify.receiver")

__all__ = ["Receiver", "serve_receiver"]

MAX_BODY = 256 * 1024
_SEEN_KEPT = 100_000


class Receiver:
    """An ASGI app: POST anything -> verify, print, 204."""

    def __init__(self, secret_file: Path | None = None, out: TextIO | None = None, record: Path | None = None) -> None:
        self.secret_file = secret_file
        self.out = out or sys.stdout
        self.record = open(record, "a", buffering=1) if record else None  # noqa: SIM115 - for the process's life
        self._keys: tuple[float, dict[str, str]] = (-1.0, {})
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.received = 0

    def _secrets(self) -> dict[str, str]:
        if self.secret_file is None:
            return {}
        try:
            mtime = self.secret_file.stat().st_mtime
        except OSError:
            return {}
        if mtime != self._keys[0]:
            try:
                self._keys = (mtime, json.loads(self.secret_file.read_text()))
            except (OSError, ValueError):
                return self._keys[1]
        return self._keys[1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request: nothing was received
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _answer(send, 413)
                return
            if not message.get("more_body"):
                break
        if scope["method"] != "POST":
            await _answer(send, 405)
            return
        arrived = time.time()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        keys = self._secrets()
        try:
            matched = ",".join(verify(body, headers, secret=keys.get("secret"), public_key=keys.get("public_key"),
                                      now=arrived)) if keys else "not checked (no secret yet)"
        except SignatureError as exc:
            matched = f"BAD ({exc})"
        try:
            payload = json.loads(body)
            event_type, data = payload.get("type", "?"), payload.get("data") or {}
            event_time = _epoch(payload.get("timestamp"))
        except (ValueError, AttributeError):
            event_type, data, event_time = "?", {}, None
        webhook_id = headers.get("webhook-id", "")
        repeat = webhook_id in self._seen
        self._seen[webhook_id] = None
        while len(self._seen) > _SEEN_KEPT:
            self._seen.popitem(last=False)
        self.received += 1
        delay = f"{arrived - event_time:.2f}s" if event_time is not None else "?"
        seq = data.get("seq", "-") if isinstance(data, dict) else "-"
        if json_mode():  # the demo's --log-format json: its lines too
            notice(log, f"{event_type} seq={seq}", event_type=event_type, seq=seq, webhook_id=webhook_id,
                   signature=matched, after=delay, repeat=repeat)
        else:
            self.out.write(f"{time.strftime('%H:%M:%S', time.localtime(arrived))} {event_type:<18} seq={seq} "
                           f"id={webhook_id} signature={matched} after={delay}{' (repeat: ignored)' if repeat else ''}\n")
            self.out.flush()
        if self.record is not None:
            self.record.write(json.dumps({"type": event_type, "seq": seq, "id": webhook_id, "event_time": event_time,
                                          "arrived": arrived}) + "\n")
        await _answer(send, 204)


def _epoch(text: Any) -> float | None:
    import datetime as dt

    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _answer(send: Any, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def serve_receiver(host: str, port: int, secret_file: Path | None, record: Path | None = None) -> None:
    import uvicorn

    app = Receiver(secret_file, record=record)
    notice(log, f"webhook receiver: http://{host}:{port}/ (prints one line per delivery)")
    uvicorn.run(app, host=host, port=port, log_level=logging.getLogger().getEffectiveLevel(), log_config=None,
                access_log=False, lifespan="off")
