"""The sync job: mirrors the upstream permit system into the Redis permit index.

:func:`verifier.sync.job.run_sync` runs it as a library function (the demo, tests);
``verifier sync`` runs it as a process. The API never imports this package: the two
meet in :mod:`verifier.index` and Redis only.
"""
