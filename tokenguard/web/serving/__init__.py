"""``tokenguard serve``: gunicorn with N workers in production, the Flask server with ``--dev``.

The replay store is shared by all workers (embedded SQLite by default), so ``--workers N`` is
replay-safe; the ``memory`` store is refused with more than one worker. SIGHUP reloads the config
the way gunicorn does, but a bad new config is refused and the old one stays in force.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from typing import Any

from tokenguard.settings import Config, ConfigError, load_config

log = logging.getLogger("tokenguard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: $TOKENGUARD_CONFIG or built-in defaults)")
    parser.add_argument("--listen", help="HOST:PORT to listen on (default: server.listen, 127.0.0.1:8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default: server.workers, 2)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: server.threads, 1)")
    parser.add_argument("--dev", action="store_true", help="single-process Flask development server")


def _refuse(config: Config, workers: int, dev: bool) -> str | None:
    if config.replay["store"] == "memory" and workers > 1 and not dev:
        return (f"{config.source}: replay.store: 'memory' keeps DPoP jti values inside one process, so with "
                f"{workers} workers a replayed proof reaching another worker would be accepted; use 'embedded' "
                "(default, shared by all workers on this host), a redis:// URL, or --workers 1")
    return None


def _prepare_metrics_dir(config: Config) -> None:
    path = config.state_dir / f"metrics-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tokenguard: {exc}", file=sys.stderr)
        return 2
    workers = args.workers or config.server["workers"]
    threads = args.threads or config.server["threads"]
    listen = args.listen or config.server["listen"]
    problem = _refuse(config, workers, args.dev)
    if problem:
        print(f"tokenguard: {problem}", file=sys.stderr)
        return 2
    config.state_dir.mkdir(parents=True, exist_ok=True)
    if args.dev:
        from tokenguard.web.app import create_app

        host, _, port = listen.rpartition(":")
        create_app(config).run(host=host.strip("[]"), port=int(port), threaded=False)
        return 0
    _prepare_metrics_dir(config)
    if config.server["engine"] == "granian":
        return _serve_granian(args.config, config, listen, workers)
    return _serve_gunicorn(args.config, config, listen, workers, threads)


def _serve_granian(path: str | None, config: Config, listen: str, workers: int) -> int:
    """granian's WSGI mode: measured ~40% more verified requests/s than gunicorn here (BENCHMARKS.md).

    Each worker builds the app from ``tokenguard.wsgi``; on SIGHUP granian respawns the workers, and
    a config that no longer validates is refused there in favour of the last valid one.
    """
    try:
        from granian import Granian
        from granian.constants import Interfaces
        from granian.log import LogLevels
    except ImportError:
        print("tokenguard: server.engine = granian needs the granian package "
              "(pip install 'tokenguard[granian]')", file=sys.stderr)
        return 2
    os.environ["TOKENGUARD_WORKERS"] = str(workers)
    if path:
        os.environ["TOKENGUARD_CONFIG"] = os.path.abspath(path)
        last_good = config.state_dir / "last-good-config.toml"  # validated at start-up by `run`
        shutil.copyfile(path, last_good)
        os.environ["TOKENGUARD_LAST_GOOD_CONFIG"] = str(last_good)
    host, _, port = listen.rpartition(":")
    options: dict[str, Any] = {"interface": Interfaces.WSGI, "workers": workers, "websockets": False,
                               "respawn_failed_workers": True, "log_level": LogLevels.warning,
                               "blocking_threads": 1}  # one request at a time per worker, as gunicorn sync
    if listen.startswith("unix:"):
        from pathlib import Path

        options["uds"] = Path(listen[len("unix:"):])
    else:
        options.update(address=host.strip("[]"), port=int(port))
    Granian("tokenguard.wsgi:application", **options).serve()
    return 0


def gunicorn_settings(listen: str, workers: int, threads: int) -> dict[str, Any]:
    """How ``serve`` runs gunicorn (the end-to-end benchmark's empty baseline uses the same)."""
    return {
        "bind": listen, "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30, "graceful_timeout": 10, "keepalive": 5, "accesslog": None, "errorlog": "-",
        "loglevel": "warning", "proc_name": "tokenguard", "child_exit": _child_exit,
        "post_worker_init": _freeze_startup_objects,
    }


def _serve_gunicorn(path: str | None, config: Config, listen: str, workers: int, threads: int) -> int:
    from gunicorn.app.base import BaseApplication

    class TokenguardApplication(BaseApplication):  # type: ignore[misc]
        """Workers are forked from the master and build their app from the last config that was valid."""

        def __init__(self) -> None:
            self.active = config
            super().__init__()

        def load_config(self) -> None:
            if getattr(self, "_started", False):  # a SIGHUP reload, not the first load
                try:
                    candidate = load_config(path)
                    problem = _refuse(candidate, workers, False)  # same refusal as at start-up
                    if problem:
                        raise ConfigError(candidate.source, "replay.store", problem.split(": ", 2)[-1])
                    self.active = candidate
                    log.warning(json.dumps({"event": "config_reloaded", "source": self.active.source}))
                except ConfigError as exc:
                    log.error(json.dumps({"event": "config_rejected", "error": str(exc)}))
            for key, value in gunicorn_settings(listen, workers, threads).items():
                self.cfg.set(key, value)
            self._started = True

        def load(self) -> Any:
            from tokenguard.web.app import create_app

            return create_app(self.active)

    TokenguardApplication().run()
    return 0


def _freeze_startup_objects(worker: Any) -> None:
    """Move everything built at start-up out of the garbage collector's reach: it lives as long as the
    worker, and scanning it on every collection costs each request time for nothing."""
    import gc

    gc.collect()
    gc.freeze()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
