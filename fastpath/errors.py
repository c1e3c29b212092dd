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
