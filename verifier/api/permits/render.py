"""Which twin renders look-ups: the compiled ``_render_c`` when built, else ``_render_py``.

The same switch as fastpath's (``FASTPATH_NO_EXTENSIONS=1`` builds and imports the
Python twins only; ``fastpath.NO_EXTENSIONS`` is its one reading). An extension that
exists but fails to import is a broken build, and that error propagates.
"""

from __future__ import annotations

from importlib.util import find_spec

from fastpath import NO_EXTENSIONS
from verifier.api.permits._render_errors import RecordError

if not NO_EXTENSIONS and find_spec("verifier.api.permits._render_c") is not None:
    from verifier.api.permits._render_c import FIELD_ORDER, field_mask, render_found  # type: ignore[import-not-found]

    IMPLEMENTATION = "c"
else:
    from verifier.api.permits._render_py import FIELD_ORDER, field_mask, render_found

    IMPLEMENTATION = "py"

__all__ = ["FIELD_ORDER", "IMPLEMENTATION", "RecordError", "field_mask", "render_found"]
