"""Exceptions of the fastpath package, defined once in plain Python.

Both twins use these. Verification itself never raises for bad input: it
returns a :class:`~fastpath.Verdict`. Exceptions are for what the caller
configures, such as a trust list that must be refused as a whole.
"""


class FastpathError(Exception):
    """Base class of every exception the fastpath package raises on purpose."""


class TrustListError(FastpathError, ValueError):
    """A trust list (WIRE-FORMAT 4) that must be refused as a whole.

    The message names the offending key (its index in ``keys`` and its kid
    text) and the reason, so an operator can fix the list.
    """


class StatusListError(FastpathError, ValueError):
    """A Status List Token (WIRE-FORMAT 8) that cannot be used, or an entry it
    does not have.

    ``reason`` is machine-readable, in the words of :mod:`fastpath.codes`
    (``header.typ``, ``key.use``, ``signature.invalid``, ``time.expired``,
    ``zlib.too_large``, ``status_list.type.bits``, ...); the message says it in
    words. An offline verdict that needed the list is ``STATUS_UNAVAILABLE``
    (WIRE-FORMAT 8), with this reason.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{message} ({reason})")
        self.reason = reason
