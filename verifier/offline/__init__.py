"""``verifier offline``: fetch a bundle while online, verify with it while offline.

The checking is :mod:`fastpath.offline` (what a scanner vendor embeds); this package is
the command line around it: :mod:`.fetch` downloads and checks a bundle and writes it
atomically, :mod:`.cli` registers ``verifier offline fetch`` and ``verifier offline verify``.
"""
