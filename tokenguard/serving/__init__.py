"""``tokenguard serve``: a well-kept server with N workers in production, the Flask server with ``--dev``.

Engines are registered by name (``server.engine``) in :data:`ENGINES`: :mod:`.uvicorn` (the default: ASGI,
the cheapest per request of the engines that keep the request-integrity guarantees) and :mod:`.gunicorn`
(WSGI). Each keeps those guarantees (header names exactly as sent, no process environment in requests,
tokenguard's own size limits, no server-level trust of forwarded headers: docs/ARCHITECTURE.md). The replay
store is shared by all workers (the embedded LMDB store by default), so ``--workers N`` is replay-safe; the
``memory`` store is refused with more than one worker. Before an engine starts, the config is checked as a
reload would check it (:mod:`.reload`): valid, suited to the host, and buildable; every engine then says
``listening`` in one JSON line once its socket is bound. SIGHUP reloads the config on every engine, and a
new config that would not work is refused while the old one stays in force.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import importlib
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from tokenguard import __version__
from tokenguard.serving.reload import load_checked, probe, redacted, refusal
from tokenguard.settings import Config, ConfigError
from tokenguard.settings.schema import listen_problem
from tokenguard.web.logs import announce, configure_logging


@dataclass(frozen=True)
class Launch:
    """What an engine needs to start: the config file, the validated config and the worker layout."""

    path: str | None
    config: Config
    listen: str
    workers: int
    threads: int

    def listening(self, engine: str | None = None) -> None:
        """The start-up line, once the engine's socket is bound: what serves, where, and for whom."""
        announce("listening", message=f"tokenguard {__version__} listening on {self.listen}", version=__version__,
                 listen=self.listen, engine=engine or self.config.server.engine, workers=self.workers,
                 threads=self.threads,
                 store=redacted(self.config.replay.store), issuers=[i.issuer for i in self.config.issuers],
                 state_dir=str(self.config.state_dir), config=self.config.source, pid=os.getpid())


Engine = Callable[[Launch], int]
ENGINES: dict[str, str] = {"uvicorn": "tokenguard.serving.uvicorn", "gunicorn": "tokenguard.serving.gunicorn"}


def engine(name: str) -> Engine:
    """The ``serve`` function of a registered engine (imported only when used)."""
    module = importlib.import_module(ENGINES[name])
    serve: Engine = module.serve
    return serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: $TOKENGUARD_CONFIG or built-in defaults)")
    parser.add_argument("--listen", help="HOST:PORT or unix:PATH to listen on (default: server.listen, 127.0.0.1:8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default: server.workers, 2)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: server.threads, 1)")
    parser.add_argument("--dev", action="store_true", help="single-process Flask development server")


def _prepare_metrics_dir(config: Config) -> None:
    """This server's per-worker metric files (:mod:`tokenguard.web.metrics`), ``metrics-<pid>``: removed when
    the server exits, and those of servers that died without removing theirs (killed) are removed here."""
    from tokenguard.web.metrics import DIR_ENV

    for stale in config.state_dir.glob("metrics-*"):
        pid = stale.name.removeprefix("metrics-")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = config.state_dir / f"metrics-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[DIR_ENV] = str(path)
    master = os.getpid()

    def remove() -> None:
        if os.getpid() == master:  # forked workers inherit this handler: only the master removes the directory
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def listen_refusal(listen: str) -> str | None:
    """Why nothing can listen on ``listen`` right now (checked before an engine starts, so that every engine
    says the same one line instead of its own retries or backtrace), or None."""
    if listen.startswith("unix:"):
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the engines do: TIME_WAIT is no conflict
        try:
            sock.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"cannot listen on {listen}: port {port} is already in use (another tokenguard, or `make "
                        "run`?); stop what uses it, or choose another address with --listen HOST:PORT "
                        "(server.listen)")
            return f"cannot listen on {listen}: {exc.strerror or exc}; choose another with --listen HOST:PORT"
    return None


def _argument_problems(args: argparse.Namespace) -> list[str]:
    problems = []
    if args.listen is not None and (problem := listen_problem(args.listen)) is not None:
        problems.append(f"--listen: {problem}")
    for name in ("workers", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            problems.append(f"--{name}: must be at least 1")
    return problems


def run(args: argparse.Namespace) -> int:
    problems = _argument_problems(args)
    if problems:
        print("\n".join(f"tokenguard: {p}" for p in problems), file=sys.stderr)
        return 2
    if args.listen:  # through the environment, so that workers, reloads and the adapters' trust all see it
        os.environ["TOKENGUARD_SERVER_LISTEN"] = args.listen
    try:
        config = load_checked(args.config)
    except ConfigError as exc:
        print("\n".join(f"tokenguard: {p}" for p in exc.problems), file=sys.stderr)
        return 2
    workers = args.workers or config.server.workers
    if (problem := refusal(config, workers, args.dev)) is not None:
        print(f"tokenguard: {config.source}: replay.store: {problem}", file=sys.stderr)
        return 2
    threads = args.threads or config.server.threads
    listen = config.server.listen
    busy = listen_refusal(listen)
    if busy:
        print(f"tokenguard: {busy}", file=sys.stderr)
        return 2
    config.state_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(config.server.log_level)
    if args.dev:
        if listen.startswith("unix:"):
            print("tokenguard: --dev serves on HOST:PORT only, not on a UNIX socket", file=sys.stderr)
            return 2
        from tokenguard.settings.wiring import build_service, start_key_refresh
        from tokenguard.web.app import create_app

        service = build_service(config)
        app = create_app(service, log_level=config.server.log_level)
        start_key_refresh(service)
        host, _, port = listen.rpartition(":")
        Launch(args.config, config, listen, 1, 1).listening("flask (--dev)")
        app.run(host=host.strip("[]"), port=int(port), threaded=False)
        return 0
    _prepare_metrics_dir(config)  # before anything imports prometheus_client
    # What every worker imports is imported once, here (the engines' workers fork from this process), and
    # the service is built once in a throwaway child: a config that would kill every worker at boot is
    # refused now, with its reason.
    for module in ("tokenguard.settings.wiring", "tokenguard.web.app"):
        importlib.import_module(module)
    problem = probe(config)
    if problem is not None:
        print(f"tokenguard: {problem}", file=sys.stderr)
        return 2
    return engine(config.server.engine)(Launch(args.config, config, listen, workers, threads))
