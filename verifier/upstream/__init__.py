"""The upstream permit system's interface, and a simulator of it.

The upstream (the Foreigner Work Management Service System) is somebody else's
system. This package documents what the sync job needs from it, and ships a
reference simulator of that interface for the demo, the tests and the load tests.
Production code never imports this package (DESIGN "Which part may use which"):
the shapes of the contract are in :mod:`verifier.lib.upstream_wire`, which the sync
job and this simulator both import.

The interface a real upstream must offer
========================================

Records are :class:`verifier.index.records.PermitRecord` (pn, n, nat, dob, cat, emp,
vf, vt, v, status, ssn, cards). On the wire a record is an array in that field order
(msgspec ``array_like``); a card is ``[cn, status]``. ``v`` is the record's version:
every change bumps it.

``GET /feed?after=SEQ&limit=N`` (N <= 10,000, default 1,000)
    The change feed. With ``Accept: application/msgpack`` the body is msgpack,
    otherwise JSON; both are a :class:`~verifier.lib.upstream_wire.FeedPage`
    ``{feed_id, after, page_end, last_seq, head_time, events: [...]}``. Each event is
    ``{seq, time, type, permit}`` with the permit's whole state after the change, so
    applying it is an idempotent upsert guarded by ``v``. Sequence numbers are dense
    (1, 2, 3, ...; every number is one event), so a page holds exactly the events
    ``after+1 .. page_end`` in order; ``last_seq`` is the feed's head, so
    ``last_seq - cursor`` is the lag in events. ``feed_id`` names this incarnation of
    the feed: when the upstream resets its feed (restore from backup, migration), the
    id changes and sequence numbers start again, and a client must resynchronise.
    An ``after`` older than the retained window (or beyond the head) is answered
    ``410 Gone`` with a problem document (``type`` ``/problems/cursor-too-old``,
    ``first_seq``, ``feed_id``): the client must resynchronise from the snapshot.

``GET /snapshot``
    Every permit, consistent with exactly one sequence number: a stream
    (``application/x-permit-snapshot``) of length-prefixed msgpack frames: a header
    ``{format, feed_id, seq, count, time}``, arrays of records, and a trailer
    ``{count, seq}`` (framing in :mod:`verifier.lib.upstream_wire`). The snapshot holds
    every change up to ``seq`` and none after it; a client loads it and then follows
    the feed from ``seq``. ``?format=ndjson`` gives the same as NDJSON lines (header,
    one record per line, trailer) for people and ``curl``.

``GET /trust-list``
    The JWK Set of WIRE-FORMAT 4 (every key with its status: active, retired,
    revoked) plus ``version``, a number bumped at every change of the set.

``GET /notice/{pn}``
    The permit's Notice of Foreigner's Work Permit for the holder's download (the API's
    holder services ask for it; the service never signs permits itself): a
    :class:`~verifier.lib.upstream_notice.Notice` ``{qr, pn, v, issued_at}``, ``qr`` a ``WP1:``
    code of the permit as it is now. ``404`` for an unknown permit, ``409`` for one that
    is cancelled or has ended (no notice is issued for it).

The simulator's extras (not part of the interface)
==================================================

- ``GET /permits/{pn}``: one permit now.
- ``POST /admin/events {type, pn, emp?, years?}``: make one lifecycle event happen now
  (issue, extend, change, cancel, card_issued, card_lost, card_replaced); answers
  the event with its ``seq``. ``POST /admin/events/random {count}``: that many random
  events at once. ``POST /admin/event-rate {rate}``: change ``--event-rate``.
- ``POST /admin/faults {slow_ms, error_rate, truncate_rate, bad_trust_list, reset_feed,
  silent_changes, retain}``: slow answers, 503s, answers cut short, a trust list
  with a kid that does not match its key (invalid as a whole), a reset feed
  (new ``feed_id``, seq from 0; ``silent_changes`` permits changed with no event,
  as a restore would), a shorter retained window (old cursors get 410).
  ``GET /admin/state``: feed id, head, window, permits, faults.
- ``POST /admin/keys/rotate`` (a new active key, the old one retired),
  ``POST /admin/keys/{kid}/revoke``.
- Issuing, with the simulator's keys: ``POST /issue/wp1 {pn, iat?, exp?}`` and
  ``POST /issue/es1 {pn, iat?, lifetime?}`` → ``{qr, pn, v}``;
  ``POST /issue/card {pn, cn?, iat?, exp?}`` → ``{cn, pn, certificate}`` (base64);
  ``POST /cards/{cn}/sign {challenge}`` → ``{signature}`` (base64): the software
  card of ``cn`` signs ``b"SSC-AUTH-1" || challenge``.

Run it: ``verifier upstream --port 8090 --permits 1000000 --seed 7 --event-rate 5``;
in-process: ``UpstreamServer(Upstream.create(permits=..., seed=...))`` from
:mod:`verifier.upstream.server`.
"""
