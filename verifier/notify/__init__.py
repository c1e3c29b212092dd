"""Notifications: partners and holders hear of changes instead of polling.

A separate process, ``verifier notify`` (:mod:`verifier.notify.notifier`), meets the
API and the sync job only in Redis and the index module, like they do:

::

    sync job --APPLY--> index Redis: {pv}:changelog (verifier.index.change_stream)
                                  |  consumer group "notify" (the leading notifier)
                                  v
     fan-out (fanout.py) --ENQUEUE--> store of record: {pvn}:ob:<sub>:<p> outbox streams
     reminders (reminders.py) ----^      |  consumer group "dispatch", one notifier per partition
     audit -> verified notices ---^      v
                                  dispatcher.py --HTTPS, Standard Webhooks--> receivers

- what a message says, and who may have which: :mod:`~verifier.notify.events`;
- signatures: :mod:`~verifier.notify.signing`; where webhooks may go (SSRF):
  :mod:`~verifier.notify.urls`; one attempt over HTTP: :mod:`~verifier.notify.delivery`;
- what is kept in the store of record, shared with the webhooks API
  (``verifier/api/webhooks``) and the CLI: :mod:`~verifier.notify.store`;
- the outbox's scripts: :mod:`~verifier.notify.outbox`.

The API imports only ``events``, ``signing``, ``urls`` and ``store`` (the contract);
nothing here imports the API.
"""
