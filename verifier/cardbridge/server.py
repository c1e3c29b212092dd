"""The bridge's HTTP server (docs/card-bridge.md): loopback only, the counter's origins only.

Why each check:
- bound to 127.0.0.1: nothing off the terminal can reach the card;
- ``Host`` must name the loopback: a web page cannot reach it through DNS rebinding;
- a request whose ``Origin`` is not the counter's is refused before the card is touched
  (CORS alone would only hide the answer from that page, after the card had signed);
- ``POST`` needs ``Content-Type: application/json``, which makes a browser send a
  preflight first, so even that refusal comes before any side effect;
- answers every preflight of a listed origin, including Chrome's Private Network Access
  one (``Access-Control-Allow-Private-Network``), for a counter served from a remote host.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from verifier.cardbridge.cards import CardError, CardSource, NoCard
from verifier.issuing.card import CHALLENGE_LENGTH
from verifier.lib.settings import DEFAULT_CARD_BRIDGE_PORT

__all__ = ["PROTOCOL", "BridgeServer"]

PROTOCOL = "pv-card-bridge/1"
MAX_BODY = 4096
log = logging.getLogger("verifier.cardbridge")

_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed", 409: "No card",
           413: "Request body too large", 415: "Unsupported media type", 502: "The card failed"}


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BridgeServer:
    """``BridgeServer(source, origins, port=...)``; ``start()`` serves in a thread, ``serve_forever()`` in this one."""

    def __init__(self, source: CardSource, origins: tuple[str, ...], host: str = "127.0.0.1",
                 port: int = DEFAULT_CARD_BRIDGE_PORT) -> None:
        if not origins:
            raise ValueError("the bridge answers the counter page's origin: give at least one")
        self.source = source
        self.origins = frozenset(origins)
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.hosts = frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"})
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BridgeServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="card-bridge", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- the two endpoints ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"protocol": PROTOCOL, "source": self.source.kind, "reader": self.source.reader(),
                "card_present": self.source.card_present()}

    def sign(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body)
            challenge = base64.b64decode(request["challenge"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise _Refused(400, 'The body is {"challenge": "<base64 of 32 bytes>"}.') from None
        if len(challenge) != CHALLENGE_LENGTH:
            raise _Refused(400, f"A challenge is {CHALLENGE_LENGTH} bytes, not {len(challenge)}.")
        try:
            certificate, signature = self.source.read(challenge)
        except NoCard:
            raise _Refused(409, "No card on the reader.") from None
        except CardError as exc:
            log.warning("card read failed: %s", exc)
            raise _Refused(502, f"The card read failed: {exc}") from None
        return {"certificate": base64.b64encode(certificate).decode(), "signature": base64.b64encode(signature).decode(),
                "reader": self.source.reader()}


def _handler(bridge: BridgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pv-card-bridge"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.debug("%s %s", self.command, format % args)  # never a body: it holds the card's data

        def _cors(self) -> list[tuple[str, str]]:
            origin = self.headers.get("Origin")
            if origin in bridge.origins:
                return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
            return [("Vary", "Origin")]

        def _send(self, status: int, body: dict[str, Any], headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
                  media_type: str = "application/json") -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in [*self._cors(), *headers]:
                self.send_header(name, value)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, status: int, detail: str) -> None:
            self._send(status, {"type": f"/problems/bridge-{status}", "title": _TITLES.get(status, "Error"),
                                "status": status, "detail": detail}, media_type="application/problem+json")

        def _gate(self) -> None:
            if self.headers.get("Host") not in bridge.hosts:
                raise _Refused(403, "The bridge answers requests to its loopback address only.")
            origin = self.headers.get("Origin")
            if origin is not None and origin not in bridge.origins:
                raise _Refused(403, "This page's origin may not use the card reader.")

        def _run(self, method: str) -> None:
            try:
                self._gate()
                path = self.path.split("?", 1)[0]
                if path not in ("/v1/status", "/v1/sign"):
                    raise _Refused(404, "The bridge has /v1/status and /v1/sign.")
                if method == "OPTIONS":
                    return self._preflight()
                if (path, method) == ("/v1/status", "GET"):
                    return self._send(200, bridge.status())
                if (path, method) != ("/v1/sign", "POST"):
                    raise _Refused(405, "GET /v1/status, POST /v1/sign.")
                if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
                    raise _Refused(415, "POST /v1/sign takes application/json.")
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY or length < 0:
                    self.close_connection = True
                    raise _Refused(413, f"A request body is at most {MAX_BODY} bytes.")
                self._send(200, bridge.sign(self.rfile.read(length)))
            except _Refused as refusal:
                self._problem(refusal.status, refusal.detail)
            except ValueError:
                self.close_connection = True
                self._problem(400, "A bad Content-Length.")

        def _preflight(self) -> None:
            headers = [("Access-Control-Allow-Methods", "GET, POST"), ("Access-Control-Allow-Headers", "Content-Type"),
                       ("Access-Control-Max-Age", "600")]
            if self.headers.get("Origin") not in bridge.origins:
                raise _Refused(403, "This page's origin may not use the card reader.")
            if (self.headers.get("Access-Control-Request-Private-Network") or "").lower() == "true":
                headers.append(("Access-Control-Allow-Private-Network", "true"))
            self.send_response(204)
            for name, value in [*self._cors(), *headers]:
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._run("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._run("POST")

        def do_OPTIONS(self) -> None:  # noqa: N802
            self._run("OPTIONS")

        def do_PUT(self) -> None:  # noqa: N802
            self._run("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._run("DELETE")

    return Handler
