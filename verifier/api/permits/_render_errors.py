"""The one error of the look-up renderer, raised by both twins (render.py)."""

from __future__ import annotations


class RecordError(ValueError):
    """A stored permit record that msgspec's decode of ``PermitRecord`` would refuse:
    the index is corrupt, which the API treats as an outage, never as "not found"."""
