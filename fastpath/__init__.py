"""fastpath: verify permit QR codes, card reads and Status Lists (WIRE-FORMAT 1-4, 6, 8).

A standalone library (it imports nothing from ``verifier``)::

    trust = fastpath.TrustList.from_jwks(jwks_json)
    verdict = fastpath.verify_qr(text, trust)
    if verdict.ok: ...

The work is done by one of two twins with the same API: the compiled
``_verify_c`` when it is built, else the pure-Python ``_verify_py`` (also when
``FASTPATH_NO_EXTENSIONS=1``). ``IMPLEMENTATION`` says which one is in use.

The API:

- ``TrustList.from_jwks(data)``: the trust list (WIRE-FORMAT 4), refused as a
  whole with ``TrustListError``. Keys with ``use`` "sig" (or none) are permit
  issuers' keys; keys with ``use`` "status" sign Status Lists, and only those:
  a permit token signed by a status key is ``UNKNOWN_KEY`` (``key.use``), a
  Status List signed by an issuer's key is refused (``key.use``). Every key
  needs ``iss``, whatever its use.
- ``verify_qr(text, trust, now=None, *, cache=True)``, ``verify_card_certificate(
  certificate, trust, now=None)``, ``verify_card(certificate, challenge,
  signature, trust, now=None)``, ``check_card_signature(card_public_key,
  challenge, signature)``: a :class:`Verdict` for anything (never an exception
  for bad input). The status checks (section 5) are the caller's.
- ``Verdict``: ``result`` (a code of :mod:`fastpath.codes`), ``reasons``,
  ``profile``, and keyword-only ``claims``, ``permit``, ``card_public_key``,
  ``kid``, ``status_ref``, ``cached``; ``ok``, ``as_dict()``.
- ``verdict.status_ref``: where the token's status is published (the CWT claim
  65535 of WIRE-FORMAT 8): a :class:`StatusRef` ``(uri, idx)``, a NamedTuple,
  or None for a token without the claim (codes minted before status lists).
  A WP1/ES1 code points into the ``permits`` list, a card certificate into
  ``cards``. A claim that is there but malformed makes the token MALFORMED.
- ``verify_status_list(token, trust, now=None)`` (:mod:`fastpath.status_list`):
  a Status List Token's raw COSE bytes to a :class:`StatusList`, or
  ``StatusListError`` whose ``reason`` names the first check that failed
  (``header.typ``, ``key.use``, ``key.revoked``, ``signature.invalid``,
  ``time.expired``, ``zlib.too_large``, ``status_list.type.bits``, ...; see
  the module for the order, the bounds and the readings chosen). Its inflated
  list is at most ``MAX_LIST_BYTES`` (16 MiB: 2**26 entries of 2 bits).
- ``StatusList``: ``sub``, ``bits``, ``lst`` (the inflated bytes), ``iat``,
  ``exp``, ``ttl``, ``kid``; ``get(idx)`` (entry ``idx``: bit ``(idx * bits) % 8``
  of byte ``(idx * bits) // 8``, LSB first; ``IndexError`` past the end),
  ``status_of(ref)`` (the entry a ``StatusRef`` points to, checking its ``uri``
  against ``sub``), ``check_time(now)`` (for a list kept since it was verified),
  ``len()`` (entries).

An offline check, with the bundle (trust list, the ``permits`` and ``cards``
lists) fetched and verified beforehand::

    permits = fastpath.verify_status_list(permits_token, trust)
    verdict = fastpath.verify_qr(text, trust)
    if verdict.ok and verdict.status_ref is not None:
        permits.check_time()
        entry = permits.status_of(verdict.status_ref)  # 0 valid, 1 cancelled, 2 suspended
"""

from importlib.util import find_spec as _find_spec

from . import codes
from ._compat import NO_EXTENSIONS
from ._trust import TrustedKey, TrustList
from ._verdict import StatusRef, Verdict
from .errors import FastpathError, StatusListError, TrustListError
from .status_list import StatusList, verify_status_list

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
    "StatusList",
    "StatusListError",
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
    "verify_status_list",
]
