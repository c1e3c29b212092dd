"""``verifier card-bridge``: the counter page's card reader on this terminal (docs/card-bridge.md).

    verifier card-bridge --allow-origin https://verifier.example [--port 7471] [--reader NAME]
    verifier card-bridge --allow-origin http://127.0.0.1:8000 --card DIR          # a software card
    verifier card-bridge --allow-origin http://127.0.0.1:8000 --simulator URL --pn PN
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from verifier.lib.logging import add_log_flags


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from verifier.lib.settings import DEFAULT_CARD_BRIDGE_PORT

    bridge = subparsers.add_parser(
        "card-bridge", help="the counter page's card reader (PC/SC, or a software card)",
        description="Serve the card-reader bridge on 127.0.0.1 for the counter page: a PC/SC reader through "
        "pyscard when one is present, else the software card given by --card or --simulator/--pn.",
    )
    bridge.add_argument("--allow-origin", action="append", required=True, metavar="ORIGIN",
                        help="the counter page's origin, e.g. http://127.0.0.1:8000 (repeat for more)")
    bridge.add_argument("--port", type=int, default=DEFAULT_CARD_BRIDGE_PORT,
                        help=f"loopback port (default {DEFAULT_CARD_BRIDGE_PORT}; 0 for any)")
    bridge.add_argument("--reader", default=None, help="PC/SC reader: part of its name (default: the first)")
    bridge.add_argument("--pcsc", action="store_true", help="use a PC/SC reader even if none is present yet")
    bridge.add_argument("--card", type=Path, default=None, metavar="DIR",
                        help="no reader: the software card of 'verifier mint card --out DIR'")
    bridge.add_argument("--simulator", default=None, metavar="URL", help="no reader: a card of the upstream simulator")
    bridge.add_argument("--pn", default=None, help="with --simulator: the permit whose card it is")
    add_log_flags(bridge)
    bridge.set_defaults(func=_card_bridge)


def _card_bridge(args: argparse.Namespace) -> int:
    import httpx

    from verifier.cardbridge.cards import CardError, choose_source
    from verifier.cardbridge.server import BridgeServer
    from verifier.issuing.keys import KeyFileError
    from verifier.lib.settings import parse_origins

    from verifier.lib.logging import configure_logging, notice
    from verifier.lib.settings import Settings

    try:
        settings = Settings.from_env(log_level=args.log_level, log_format=args.log_format)
    except ValueError as exc:
        print(f"verifier card-bridge: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        origins = parse_origins(",".join(args.allow_origin))
        source = choose_source(card_folder=args.card, simulator=args.simulator, pn=args.pn, reader=args.reader,
                               use_reader=True if args.pcsc else None)
        server = BridgeServer(source, origins, port=args.port)
    except (ValueError, CardError, KeyFileError, OSError, httpx.HTTPError) as exc:
        print(f"verifier card-bridge: {exc}", file=sys.stderr)
        return 2
    notice(logging.getLogger("verifier.cardbridge"),
           f"card bridge on {server.url} ({source.kind}: {source.reader()}) for {', '.join(origins)}")
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        source.close()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the bridge like Ctrl-C: the socket is closed
