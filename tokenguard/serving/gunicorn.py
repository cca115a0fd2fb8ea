"""gunicorn (opt-in, ``server.engine = "gunicorn"``): sync workers (gthread with ``threads > 1``) and its C
HTTP parser (``gunicorn[fast]``), serving the WSGI front (:mod:`tokenguard.web.app`).

gunicorn's own trust of forwarded headers is off (it would set the scheme from ``X-Forwarded-Proto`` sent
by any loopback or UNIX-socket peer): only tokenguard's ``trusted_proxies`` decide what a proxy says.

Workers are forked from the master and build their app from the config the :class:`ConfigGuard` holds;
on SIGHUP the master re-reads the file and a config that does not validate is refused.
"""

from __future__ import annotations

from typing import Any

from tokenguard.serving import Launch
from tokenguard.serving.reload import ConfigGuard


def gunicorn_settings(listen: str, workers: int, threads: int) -> dict[str, Any]:
    """How ``serve`` runs gunicorn (the end-to-end benchmark's empty baseline uses the same)."""
    return {
        "bind": listen, "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30, "graceful_timeout": 10, "keepalive": 5, "accesslog": None, "errorlog": "-",
        "loglevel": "warning", "proc_name": "tokenguard",
        "post_worker_init": _freeze_startup_objects,
        "forwarded_allow_ips": "", "secure_scheme_headers": {}, "forwarder_headers": "",
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
            self._started = True

        def load(self) -> Any:
            from tokenguard.settings.wiring import build_service
            from tokenguard.web.app import create_app

            return create_app(build_service(guard.active), log_level=guard.active.server.log_level)

    TokenguardApplication().run()
    return 0


def _freeze_startup_objects(worker: Any) -> None:
    """Move everything built at start-up out of the garbage collector's reach: it lives as long as the
    worker, and scanning it on every collection costs each request time for nothing."""
    import gc

    gc.collect()
    gc.freeze()
