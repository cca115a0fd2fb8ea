"""gunicorn (opt-in, ``server.engine = "gunicorn"``): sync workers (gthread with ``threads > 1``) serving the
WSGI front (:mod:`tokenguard.web.app`), configured for request integrity.

* Header names: ``header_map = "drop"`` drops names with underscores (WSGI would read ``X_Foo`` as ``X-Foo``).
* No server-level trust of forwarded headers: ``forwarded_allow_ips``, ``secure_scheme_headers`` and
  ``forwarder_headers`` are empty (gunicorn would otherwise let ``X-Forwarded-Proto`` set the scheme, and it
  trusts UNIX-socket peers always); tokenguard's adapters alone decide what to believe.
* tokenguard's limits, not the server's: the pure-Python parser with its limits raised above anything a
  proxy forwards (the C parser refuses more than 256 fields whatever the settings), so an oversized request
  gets tokenguard's 401 and never a 431/400 that nginx would turn into 500.
* ``listen = "unix:PATH"``: the socket is created 0660 (``umask``), so only tokenguard's user and group connect.

Workers are forked from the master and build their app from the config the :class:`ConfigGuard` holds;
on SIGHUP the master re-reads the file, and a config that does not validate, suit the host or build is
refused before any worker is replaced. gunicorn's own log lines are tokenguard's JSON lines.
"""

from __future__ import annotations

from typing import Any

from tokenguard.serving import Launch
from tokenguard.serving.reload import ConfigGuard
from tokenguard.web.logs import json_handlers

#: Above what nginx (4 x 32 KiB buffers) or Caddy (1 MiB) forwards; gunicorn's own maximum field count.
FIELD_SIZE_LIMIT = (1 << 20) + (64 << 10)
FIELD_COUNT_LIMIT = 32768


def gunicorn_settings(listen: str, workers: int, threads: int) -> dict[str, Any]:
    """How ``serve`` runs gunicorn (the end-to-end benchmark's empty baseline uses the same)."""
    return {
        "bind": listen, "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30, "graceful_timeout": 10, "keepalive": 5, "accesslog": None, "errorlog": "-",
        "loglevel": "warning", "proc_name": "tokenguard",
        "post_worker_init": _freeze_startup_objects, "logger_class": _json_logger,
        # request integrity (module docstring)
        "header_map": "drop", "forwarded_allow_ips": "", "secure_scheme_headers": {}, "forwarder_headers": "",
        "http_parser": "python", "limit_request_line": 0, "limit_request_fields": FIELD_COUNT_LIMIT,
        "limit_request_field_size": FIELD_SIZE_LIMIT, "umask": 0o117,
        # no second, unauthenticated control endpoint (gunicorn >= 25.1 opens $HOME/.gunicorn/gunicorn.ctl,
        # shared by every gunicorn of the user): SIGHUP and SIGTERM are the interface
        "control_socket_disable": True,
    }


def serve(launch: Launch) -> int:
    from gunicorn.app.base import BaseApplication

    guard = ConfigGuard(launch.path, launch.workers, launch.config)

    class TokenguardApplication(BaseApplication):
        def load_config(self) -> None:
            if getattr(self, "_started", False):  # a SIGHUP reload, not the first load
                guard.reload()
            for key, value in gunicorn_settings(launch.listen, launch.workers, launch.threads).items():
                self.cfg.set(key, value)
            self.cfg.set("when_ready", lambda server: launch.listening())
            self._started = True

        def load(self) -> Any:
            from tokenguard.settings.wiring import build_service, start_key_refresh
            from tokenguard.web.app import create_app

            service = build_service(guard.active)
            app = create_app(service, log_level=guard.active.server.log_level)
            start_key_refresh(service)
            return app

    TokenguardApplication().run()
    return 0


def _json_logger() -> type:
    """gunicorn's logger, writing its error log as tokenguard's JSON lines (gunicorn calls this lazily)."""
    from gunicorn.glogging import Logger

    class JsonLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            json_handlers(self.error_log)

    return JsonLogger


def _freeze_startup_objects(worker: Any) -> None:
    """Move everything built at start-up out of the garbage collector's reach: it lives as long as the
    worker, and scanning it on every collection costs each request time for nothing."""
    import gc

    gc.collect()
    gc.freeze()
