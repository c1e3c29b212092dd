"""The ASGI factory uvicorn calls in every API worker process.

``verifier serve`` puts its settings in the environment before uvicorn spawns the
workers (``Settings.to_env``); each worker reads them once here and builds the app.
"""

from __future__ import annotations

from litestar import Litestar

from verifier.lib.settings import Settings

APP_FACTORY = "verifier.run.asgi:create_app_from_env"


def create_app_from_env() -> Litestar:
    from verifier.api.app import create_app
    from verifier.lib.logging import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)  # the worker's own lines (its shutdown line among them)
    return create_app(settings, tune_gc=True)  # a serving worker: see verifier.api.runtime.tune_gc
