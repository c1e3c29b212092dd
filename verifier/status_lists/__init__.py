"""Status Lists (WIRE-FORMAT 8): the service's signed, compressed bit lists of permit and
card status, for scanners that verify without a network.

- :mod:`.entries`: the rule from a permit record to its entries (``permits``: 0 valid,
  1 cancelled, 2 suspended; ``cards``: 0 valid, 1 not valid; unclaimed indexes 1);
- :mod:`.bits`: the entries one byte each, and their packing into the draft's bit array;
- :mod:`.token`: the signed Status List Token (COSE_Sign1, ``typ``
  ``application/statuslist+cwt``), zlib level 9 with the run-length strategy;
- :mod:`.keys`: the signing key ring, apart from the issuers' keys, in the store of record;
- :mod:`.writer`: ``verifier status-lists run``, the process that keeps the lists
  current from the index (why a process of its own: see there);
- the lists as stored and served: :mod:`verifier.index.status_lists` (where this
  package and the API meet); the endpoint: ``GET /v1/status-lists/{name}``
  (:mod:`verifier.api.status_lists`).

The offline side, reading them, is ``fastpath.offline`` (a scanner vendor's library)
and ``verifier offline`` (:mod:`verifier.offline`).
"""
