"""Which twin codes stored records: the compiled ``_stored_c`` when built, else ``_stored_py``.

The compact stored layout (the permit number left out, dates as day numbers, the
statuses as small integers: ~98 bytes a value against 154) is described in
``_stored_py.py``; ``decode_stored`` reads the legacy layout too. The same switch
as fastpath's (``FASTPATH_NO_EXTENSIONS=1`` builds and imports the Python twins
only; ``fastpath.NO_EXTENSIONS`` is its one reading). An extension that exists but
fails to import is a broken build, and that error propagates.
"""

from __future__ import annotations

from importlib.util import find_spec

from fastpath import NO_EXTENSIONS
from verifier.index._stored_errors import StoredRecordError

if not NO_EXTENSIONS and find_spec("verifier.index._stored_c") is not None:
    from verifier.index import _stored_c as _twin  # type: ignore[attr-defined]

    IMPLEMENTATION = "c"
else:
    from verifier.index import _stored_py as _twin

    IMPLEMENTATION = "py"

decode_stored = _twin.decode_stored
encode_stored = _twin.encode_stored
is_compact = _twin.is_compact
pack_lookup_bucket = _twin.pack_lookup_bucket
prepare_load = _twin.prepare_load
stored_version = _twin.stored_version

__all__ = ["IMPLEMENTATION", "StoredRecordError", "decode_stored", "encode_stored", "is_compact",
           "pack_lookup_bucket", "prepare_load", "stored_version"]
