"""The flags of ``verifier serve`` for the counter page and browser front ends (same names as the settings)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_counter_flags", "counter_overrides"]


def add_counter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cors-origin", action="append", default=None, metavar="ORIGIN",
                        help="a web front end's origin allowed to call the API from a browser (repeat; "
                        "default: $VERIFIER_CORS_ORIGINS, comma-separated, or none)")
    parser.add_argument("--card-bridge-origin", default=None, metavar="ORIGIN",
                        help="the counter page's card-reader bridge on each terminal (default: "
                        "$VERIFIER_CARD_BRIDGE_ORIGIN or http://127.0.0.1:7471; '' turns card reads off)")
    parser.add_argument("--counter-clear-s", type=float, default=None, metavar="SECONDS",
                        help="default seconds before the counter page clears a verdict "
                        "(default: $VERIFIER_COUNTER_CLEAR_S or 30)")


def counter_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings overrides those flags give (None: the environment's value stands)."""
    return {"cors_origins": args.cors_origin, "card_bridge_origin": args.card_bridge_origin,
            "counter_clear_s": args.counter_clear_s}
