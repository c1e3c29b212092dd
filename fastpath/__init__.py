"""fastpath: verify permit QR codes and card reads (WIRE-FORMAT 1-4 and 6).

A standalone library (it imports nothing from ``verifier``)::

    trust = fastpath.TrustList.from_jwks(jwks_json)
    verdict = fastpath.verify_qr(text, trust)
    if verdict.ok: ...

The work is done by one of two twins with the same API: the compiled
``_verify_c`` when it is built, else the pure-Python ``_verify_py`` (also when
``FASTPATH_NO_EXTENSIONS=1``). ``IMPLEMENTATION`` says which one is in use.
"""

from importlib.util import find_spec as _find_spec

from . import codes
from ._compat import NO_EXTENSIONS
from ._trust import TrustedKey, TrustList
from ._verdict import StatusRef, Verdict
from .errors import FastpathError, TrustListError

# Fall back to the Python twin silently only when the extension is absent (no
# compiler, or the switch): one that exists but fails to import is a broken
# build, and that error must propagate.
if not NO_EXTENSIONS and _find_spec("fastpath._verify_c") is not None:
    from ._verify_c import (  # type: ignore[import-not-found]
        check_card_signature,
        verify_card,
        verify_card_certificate,
        verify_qr,
    )

    IMPLEMENTATION = "c"
else:
    from ._verify_py import check_card_signature, verify_card, verify_card_certificate, verify_qr

    IMPLEMENTATION = "py"

__all__ = [
    "IMPLEMENTATION",
    "NO_EXTENSIONS",
    "FastpathError",
    "StatusRef",
    "TrustList",
    "TrustListError",
    "TrustedKey",
    "Verdict",
    "check_card_signature",
    "codes",
    "verify_card",
    "verify_card_certificate",
    "verify_qr",
]
