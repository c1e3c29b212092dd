"""``verifier serve``: the API on uvicorn, as run in production.

uvicorn with uvloop and httptools and its access log off (the access log halves the
throughput, and h11 costs more than half: DESIGN, Targets), several worker processes
sharing one listening socket. A stop drains (``verifier/run/drain.py``): new
connections refused, requests in flight and those arriving on open connections
answered with ``Connection: close``; a worker that dies is replaced. The app is built by a module-level factory in each
worker from the settings that the parent put in the environment before spawning.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from verifier.lib.logging import configure_logging, notice
from verifier.lib.settings import Settings
from verifier.run.asgi import APP_FACTORY
from verifier.run.drain import PROTOCOL, Supervisor

log = logging.getLogger("verifier.serve")

# The one set of server settings: `verifier serve`, the demo and the API benchmark's
# anchor endpoint all run with these, so their figures compare.
UVICORN_OPTIONS: dict[str, object] = {
    "loop": "uvloop",
    "http": PROTOCOL,  # uvicorn's httptools protocol, draining on a stop
    "access_log": False,
    "lifespan": "on",
    "factory": True,
    "timeout_graceful_shutdown": 10,
}


def run_uvicorn(app: str, *, host: str, port: int, workers: int, log_level: str = "warning",
                log_config: object = uvicorn.config.LOGGING_CONFIG) -> int:
    """Serve the factory ``app`` ("module:function") until SIGINT or SIGTERM; 0 on a clean stop.
    ``log_config=None``: uvicorn's lines go to the process's own handlers (``verifier serve``)."""
    config = uvicorn.Config(app, host=host, port=port, workers=workers, log_level=log_level.lower(),  # type: ignore[arg-type]
                            log_config=log_config, **UVICORN_OPTIONS)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    # Bind here, in the parent, so `--port 0` works and every worker shares the socket.
    sock = config.bind_socket()
    bound_port = sock.getsockname()[1]
    notice(log, f"verifier: serving on http://{_url_host(host)}:{bound_port} with {workers} worker(s)")
    try:
        if workers > 1:
            Supervisor(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if workers == 1 and not server.started:
        return 3  # the app failed to start; uvicorn has logged why
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextmanager
def private_redis_if_unset(settings: Settings) -> Iterator[Settings]:
    """Run the private Redis-protocol servers (DESIGN, Storage) that the settings leave unset, for as
    long as we serve: with no REDIS_URL the index's; with neither REDIS_URL nor VERIFIER_STORE_URL the
    store of record's too, beside it (AOF fsynced on every write).

    A REDIS_URL without a VERIFIER_STORE_URL keeps the store in the index's Redis (it
    works, but a FLUSHALL of that Redis then takes the API keys and the audit with it:
    said once in the log). The servers run as children in sessions of their own,
    stopped after uvicorn has stopped, so the workers' last audit records still reach
    them on Ctrl-C.
    """
    from verifier.run.private_redis import INDEX, STORE, PrivateServer, private_redis_child, wait_for_url

    wanted: list[tuple[str, PrivateServer]] = []
    if not settings.redis_url:
        wanted.append(("redis_url", INDEX))
        if not settings.store_url:
            wanted.append(("store_url", STORE))
    elif not settings.store_url:
        log.warning("no VERIFIER_STORE_URL: the store of record (API keys, audit) shares the index's Redis; "
                    "losing that Redis's data would lose them too")
    state_dir = settings.state_dir.resolve()
    started = []
    try:
        urls = {}
        for field, server in wanted:
            child, url_file = private_redis_child(state_dir, state_dir / "logs", server)
            started.append(child.start())
            urls[field] = url = wait_for_url(url_file, child.check_running)
            log.warning("no %s: started a private server at %s (data in %s, appendfsync %s)%s",
                        "REDIS_URL" if field == "redis_url" else "VERIFIER_STORE_URL", url,
                        state_dir / server.name, server.appendfsync,
                        "; the index stays unready until a sync job fills it" if server is INDEX else "")
        yield settings.with_(**urls)
    finally:
        for child in reversed(started):
            child.stop()


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    with private_redis_if_unset(settings) as settings:
        # Settings reach the workers through the environment they inherit at spawn.
        os.environ.update(settings.to_env())
        return run_uvicorn(
            APP_FACTORY,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            # uvicorn's own start-up chatter stays out of the logs unless debugging
            log_level="debug" if settings.log_level.upper() == "DEBUG" else "warning",
            log_config=None,  # one format: the workers set it up from the settings (verifier.run.asgi)
        )


if __name__ == "__main__":  # the benchmark's way to run another factory with the same options
    sys.exit(run_uvicorn(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), workers=int(sys.argv[3])))
