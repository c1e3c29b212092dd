"""The ASGI factory uvicorn calls in every API worker process.

``verifier serve`` puts its settings in the environment before uvicorn spawns the
workers (``Settings.to_env``); each worker reads them once here and builds the app.
"""

from __future__ import annotations

import logging

from litestar import Litestar

from verifier.lib.settings import Settings

APP_FACTORY = "verifier.run.asgi:create_app_from_env"


def create_app_from_env() -> Litestar:
    from verifier.api.app import create_app
    from verifier.lib.logging import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn's level for its own loggers (its start-up chatter only when debugging)
    logging.getLogger("uvicorn.error").setLevel("DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING")
    return create_app(settings, tune_gc=True)  # a serving worker: see verifier.api.runtime.tune_gc
