"""``verifier serve``: the API on uvicorn, as run in production.

uvicorn with uvloop and httptools and its access log off (the access log halves the
throughput, and h11 costs more than half: DESIGN, Targets), several worker processes
sharing one listening socket. The app is built by a module-level factory in each
worker from the settings that the parent put in the environment before spawning.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from verifier.lib.settings import Settings
from verifier.run.asgi import APP_FACTORY

log = logging.getLogger("verifier.serve")

# The one set of server settings: `verifier serve`, the demo and the API benchmark's
# anchor endpoint all run with these, so their figures compare.
UVICORN_OPTIONS: dict[str, object] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "lifespan": "on",
    "factory": True,
    "timeout_graceful_shutdown": 10,
}


def run_uvicorn(app: str, *, host: str, port: int, workers: int, log_level: str = "warning") -> int:
    """Serve the factory ``app`` ("module:function") until SIGINT or SIGTERM; 0 on a clean stop."""
    config = uvicorn.Config(app, host=host, port=port, workers=workers, log_level=log_level.lower(), **UVICORN_OPTIONS)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    # Bind here, in the parent, so `--port 0` works and every worker shares the socket.
    sock = config.bind_socket()
    bound_port = sock.getsockname()[1]
    print(f"verifier: serving on http://{_url_host(host)}:{bound_port} with {workers} worker(s)", flush=True)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
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
    """With no REDIS_URL, run the private Redis-protocol server (DESIGN, Storage) for as long as we serve.

    It runs as a child in its own session, stopped after uvicorn has stopped, so the
    workers' last audit records still reach it on Ctrl-C.
    """
    if settings.redis_url:
        yield settings
        return
    from verifier.run.private_redis import private_redis_child, wait_for_url

    state_dir = settings.state_dir.resolve()
    child, url_file = private_redis_child(state_dir, state_dir / "logs" / "redis.log")
    child.start()
    try:
        url = wait_for_url(url_file, child.check_running)
        log.warning("no REDIS_URL: started a private server at %s (data in %s); the index stays "
                    "unready until a sync job fills it", url, state_dir / "redis")
        yield settings.with_(redis_url=url)
    finally:
        child.stop()


def serve(settings: Settings) -> int:
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
        )


if __name__ == "__main__":  # the benchmark's way to run another factory with the same options
    sys.exit(run_uvicorn(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), workers=int(sys.argv[3])))
