"""The counter terminal: the web page officers and clerks use all day, served by the API.

``GET /counter/`` is static HTML, ES modules and CSS (``static/``), no build step; it
calls the same public API as any scanner with the terminal's key, and the card-reader
bridge on the terminal's loopback (docs/card-bridge.md). ``GET /counter/config.json``
tells the page the settings it needs (bridge origin, verdict clear time). Vendored
browser packages (``verifier/api/vendor/``, written by ``scripts/vendor-browser.sh``)
are served at ``/vendor/``. Every response of these routes carries a strict
Content-Security-Policy: the page can load and connect to its own origin only (and the
one bridge origin), so nothing it shows or sends can reach another site.
"""
