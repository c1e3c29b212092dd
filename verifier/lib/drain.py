"""What one API worker's drain did after SIGTERM, counted by the HTTP protocol and logged by the runtime.

The launcher's protocol (``verifier/run/drain.py``) counts; the worker's runtime
(``verifier/api/runtime.py``) writes them in its one shutdown line. Kept here, in
neither, so that the app does not import the launcher.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DRAIN", "DrainCounts"]


@dataclass(slots=True)
class DrainCounts:
    signalled: bool = False
    """The server was told to stop (its connections were asked to shut down)."""
    in_flight: int = 0
    """Requests being answered when the signal came (finished, then their connection closed)."""
    on_open_connections: int = 0
    """Requests that arrived on kept-alive connections during the drain (answered with Connection: close)."""
    idle_closed: int = 0
    """Kept-alive connections that sent nothing during the drain, closed at its end."""

    def describe(self) -> str:
        return (f"{self.in_flight} in flight at the signal, {self.on_open_connections} answered on open "
                f"connections during the drain (Connection: close), {self.idle_closed} idle connections closed")


DRAIN = DrainCounts()
"""This process's counts (one worker process serves one app)."""
