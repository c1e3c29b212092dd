"""The card-reader bridge: the counter page's way to the physical card (the browser cannot speak PC/SC).

A small HTTP server on the terminal's loopback (``verifier card-bridge``), answering the
counter page's origin only. The page gets a challenge from the API, the bridge has the
card sign it and hands back the card's certificate and signature, the page sends all
three to ``POST /v1/verify/card``. The protocol is in ``docs/card-bridge.md``.

Cards (:mod:`verifier.cardbridge.cards`): a real reader through PC/SC (``pyscard``,
optional: ``pip install 'permit-verifier[card-reader]'``), else the issuing side's
software card behind the same chip commands (:mod:`verifier.cardbridge.applet`), from a
card folder of ``verifier mint card`` or from the upstream simulator (the demo).
The bridge never sees an API key and never talks to the API.
"""
