"""uvicorn with the httptools parser: the ASGI front (:mod:`tokenguard.web.asgi`) in N worker processes.

Chosen by measurement (BENCHMARKS.md, docs/measurements.md): the cheapest engine per request that keeps
the request-integrity guarantees -- every header line reaches the app under its own name (ASGI
``scope["headers"]``), nothing of the process environment is part of a request, and the server adds no
header size or count limit of its own, so tokenguard's limits (and the proxy's) are the only ones.
uvicorn's own trust of ``X-Forwarded-*`` is off: only tokenguard's ``trusted_proxies`` decide.

The master binds the socket and supervises the workers; each worker builds its app from the config the
reload guard accepted last (:func:`tokenguard.serving.reload.load_for_worker`). On SIGHUP the master asks
the :class:`ConfigGuard` first: a config it refuses replaces no worker; an accepted one replaces each
worker in turn, the new one serving before the old one stops (no dropped requests).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tokenguard.serving import Launch
from tokenguard.serving.reload import LAST_GOOD_ENV, ConfigGuard, load_for_worker, redacted
from tokenguard.web.asgi import AsgiApp
from tokenguard.web.logs import configure_logging, event

STARTUP_FAILURE = 3  # uvicorn.config.STARTUP_FAILURE: a worker that could not start; uvicorn does not respawn it

#: uvicorn's own loggers: warnings and errors only, one JSON line each (tokenguard's format), to stderr.
LOG_CONFIG: dict[str, Any] = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "tokenguard.web.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
                "uvicorn.error": {"level": "WARNING"}, "uvicorn.access": {"level": "WARNING"}},
}
KEEP_ALIVE = 75  # seconds: longer than the proxies' idle upstream keep-alive (nginx 60 s), so they close first
WORKER_READY_TIMEOUT = 30  # seconds a new worker may take to start serving before a reload gives up on it


def uvicorn_options(listen: str, workers: int) -> dict[str, Any]:
    """How ``serve`` runs uvicorn (the end-to-end benchmark's empty and ceiling rows use the same)."""
    options: dict[str, Any] = {
        "workers": workers, "http": "httptools", "loop": "uvloop", "interface": "asgi3", "lifespan": "on",
        "proxy_headers": False, "forwarded_allow_ips": "", "server_header": False, "date_header": False,
        "timeout_keep_alive": KEEP_ALIVE, "timeout_worker_healthcheck": WORKER_READY_TIMEOUT,
        "access_log": False, "log_config": LOG_CONFIG, "log_level": "warning", "ws": "none",
    }
    if listen.startswith("unix:"):
        options["uds"] = listen[len("unix:"):]
    else:
        host, _, port = listen.rpartition(":")
        options.update(host=host.strip("[]"), port=int(port))
    return options


def create_app() -> AsgiApp:
    """The factory every worker calls (uvicorn starts workers fresh, with ``spawn``). A worker that cannot
    build its service says why in one line and exits with uvicorn's start-up failure status: at start the
    server then stops instead of respawning it forever, on a reload the running workers are kept."""
    from tokenguard.settings.wiring import build_service, start_key_refresh

    configure_logging()
    try:
        config = load_for_worker()
        configure_logging(config.server.log_level)
        service = build_service(config)

        def started() -> None:
            _freeze_startup_objects()
            start_key_refresh(service)  # after the freeze: the refresher's own objects are short-lived

        return AsgiApp(service, on_startup=started)
    except Exception as exc:  # whatever it is, it would fail the same way on every restart
        reason = redacted(f"{type(exc).__name__}: {exc}")  # never a URL's password
        event("worker_start_failed", logging.ERROR, error=reason[:500])
        sys.exit(STARTUP_FAILURE)


def _freeze_startup_objects() -> None:
    """Everything built at start-up lives as long as the worker: keep it out of every garbage collection."""
    gc.collect()
    gc.freeze()


def serve(launch: Launch) -> int:
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    # uvicorn starts its workers afresh (spawn): they read the config the guard accepted last, kept private.
    last_good = launch.config.state_dir / "last-good-config.toml" if launch.path else None
    guard = ConfigGuard(launch.path, launch.workers, launch.config, last_good=last_good)
    if last_good is not None:
        os.environ[LAST_GOOD_ENV] = str(last_good)

    class GuardedMultiprocess(Multiprocess):
        """uvicorn's worker supervisor, with the reload guard in front of every SIGHUP restart."""

        def handle_hup(self) -> None:
            before = guard.active
            if guard.reload() is before:  # refused (and logged): the workers keep the config in force
                return
            self.restart_all()

    config = uvicorn.Config("tokenguard.serving.uvicorn:create_app", factory=True,
                            **uvicorn_options(launch.listen, launch.workers))
    # After uvicorn's Config: its logging.config.dictConfig closes every handler there is, ours too.
    configure_logging(launch.config.server.log_level)
    try:
        socket = config.bind_socket()
    except SystemExit:  # uvicorn logged why (address in use, ...)
        return 2
    if config.uds:  # only tokenguard's user and group may connect (uvicorn creates it 0666)
        os.chmod(config.uds, 0o660)
    launch.listening()
    supervisor = GuardedMultiprocess(config, sockets=[socket])
    try:
        supervisor.run()
    finally:
        if config.uds and Path(config.uds).exists():
            Path(config.uds).unlink()
    logging.shutdown()
    return 1 if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0
