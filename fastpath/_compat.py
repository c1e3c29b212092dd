"""Which twin to use: the one switch, named after the package.

``FASTPATH_NO_EXTENSIONS=1`` turns the compiled twin off at build time
(setup.py) and at import time (here). The same reading as setup.py: unset,
empty or ``0`` means the switch is off. This is the one environment read
outside ``verifier/lib/settings.py``, because fastpath is a standalone library.
"""

import os

NO_EXTENSIONS: bool = os.environ.get("FASTPATH_NO_EXTENSIONS", "") not in ("", "0")
