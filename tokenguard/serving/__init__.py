"""``tokenguard serve``: a well-kept server with N workers in production, the Flask server with ``--dev``.

Engines are registered by name (``server.engine``): :mod:`.uvicorn` (the default: ASGI, the cheapest per
request of the engines that keep the request-integrity guarantees) and :mod:`.gunicorn` (WSGI). The replay
store is shared by all workers (embedded SQLite by default), so ``--workers N`` is replay-safe; the
``memory`` store is refused with more than one worker. SIGHUP reloads the config on every engine, and a
bad new config is refused while the old one stays in force (:mod:`.reload`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from tokenguard.serving.reload import refusal
from tokenguard.settings import Config, ConfigError, load_config


@dataclass(frozen=True)
class Launch:
    """What an engine needs to start: the config file, the validated config and the worker layout."""

    path: str | None
    config: Config
    listen: str
    workers: int
    threads: int


Engine = Callable[[Launch], int]
ENGINES: dict[str, str] = {"uvicorn": "tokenguard.serving.uvicorn", "gunicorn": "tokenguard.serving.gunicorn"}


def engine(name: str) -> Engine:
    """The ``serve`` function of a registered engine (imported only when used)."""
    module = importlib.import_module(ENGINES[name])
    serve: Engine = module.serve
    return serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: $TOKENGUARD_CONFIG or built-in defaults)")
    parser.add_argument("--listen", help="HOST:PORT to listen on (default: server.listen, 127.0.0.1:8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default: server.workers, 2)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: server.threads, 1)")
    parser.add_argument("--dev", action="store_true", help="single-process Flask development server")


def _prepare_metrics_dir(config: Config) -> None:
    """A fresh directory for this server's per-worker metric files (:mod:`tokenguard.web.metrics`)."""
    from tokenguard.web.metrics import DIR_ENV

    path = config.state_dir / f"metrics-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[DIR_ENV] = str(path)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tokenguard: {exc}", file=sys.stderr)
        return 2
    workers = args.workers or config.server.workers
    threads = args.threads or config.server.threads
    listen = args.listen or config.server.listen
    problem = refusal(config, workers, args.dev)
    if problem:
        print(f"tokenguard: {config.source}: replay.store: {problem}", file=sys.stderr)
        return 2
    config.state_dir.mkdir(parents=True, exist_ok=True)
    if args.dev:
        from tokenguard.settings.wiring import build_service
        from tokenguard.web.app import create_app

        host, _, port = listen.rpartition(":")
        create_app(build_service(config), log_level=config.server.log_level).run(
            host=host.strip("[]"), port=int(port), threaded=False)
        return 0
    _prepare_metrics_dir(config)
    return engine(config.server.engine)(Launch(args.config, config, listen, workers, threads))
