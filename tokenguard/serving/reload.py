"""The reload guard every engine shares: a config is served only if it would really work, else the one in
force stays and the reason is logged (contract, "Shared state").

A candidate config must (1) validate, every problem reported at once; (2) suit this host: the state
directory can be created and written, secret files can be read, the replay store suits the worker count
(:func:`load_checked`); and (3) build: :func:`probe` builds the whole service in a throwaway child process,
so whatever would fail at worker boot (a replay store that cannot be opened, ...) is refused while the
running workers stay untouched. Start-up asks the same questions.

The engine's master decides, once per SIGHUP (:class:`ConfigGuard`), before any worker is replaced. Workers
that fork from the master build from the accepted :class:`Config` they inherit; workers an engine starts
afresh build from the accepted file, of which the guard then keeps a private copy (0600: a config may hold
a nonce or client secret) under the state directory (:func:`load_for_worker`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path

from tokenguard.files import write_private
from tokenguard.settings import Config, ConfigError, load_config
from tokenguard.settings.loader import Problem
from tokenguard.settings.schema import host_problems
from tokenguard.web.logs import announce
from tokenguard.web.metrics import DIR_ENV

LAST_GOOD_ENV = "TOKENGUARD_LAST_GOOD_CONFIG"
PROBE_TIMEOUT = 60.0  # seconds a throwaway build may take (a replay store's own connect timeouts are shorter)
_USERINFO = re.compile(r"://[^/@\s]*@")


def refusal(config: Config, workers: int, dev: bool = False) -> str | None:
    """Why ``config`` cannot be served with ``workers`` processes, or None."""
    if config.replay.store == "memory" and workers > 1 and not dev:
        return (f"'memory' keeps DPoP jti values inside one process, so with {workers} workers a replayed "
                "proof reaching another worker would be accepted; use 'embedded' (default, shared by all "
                "workers on this host), a redis:// URL, or --workers 1")
    from tokenguard.settings.replay import replay_store_refusal  # opens a Redis connection: only when asked

    return replay_store_refusal(config)


def load_checked(path: str | None, workers: int | None = None) -> Config:
    """Load ``path`` and check it against this host and, when known, against ``workers`` processes (the
    command line may set them); a :class:`ConfigError` names every problem."""
    config = load_config(path)
    problems = [Problem(config.source, key, problem) for key, problem in host_problems(config)]
    if workers is not None and (problem := refusal(config, workers)) is not None:
        problems.append(Problem(config.source, "replay.store", problem))
    if problems:
        raise ConfigError.of(problems)
    return config


def redacted(text: str) -> str:
    """``text`` without the credentials of any URL in it (``redis://user:secret@host`` -> ``redis://***@host``)."""
    return _USERINFO.sub("://***@", text)


def _build_problem(config: Config) -> str:
    """Build the service for ``config`` as a worker would: "" if it worked, else what failed."""
    try:
        from tokenguard.settings.wiring import build_service
        from tokenguard.web.app import create_app

        create_app(build_service(config), log_level=config.server.log_level)
    except ConfigError as exc:
        return str(exc)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{config.source}: cannot start workers: {type(exc).__name__}: {exc.strerror or exc}{where}"
    except Exception as exc:  # whatever a worker would die of; URLs' credentials removed
        return f"{config.source}: cannot start workers: {type(exc).__name__}: {redacted(str(exc))[:300]}"
    return ""


def probe(config: Config, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Build the service for ``config`` in a forked throwaway process; why that failed, or None.

    The child exits at once (``os._exit``): nothing it opened outlives it, and the caller (an engine's
    master) never holds a replay store, a thread or a connection its workers would inherit.
    """
    metrics = tempfile.mkdtemp(prefix="tokenguard-probe-")  # the child's metric files, discarded
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its outcome is what the parent reads
        status = 1
        try:
            os.close(read_end)
            os.environ[DIR_ENV] = metrics
            problem = _build_problem(config)
            os.write(write_end, ("ok" if not problem else "no" + problem).encode()[:8192])
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    answer = b""
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(0.0, remaining))
            if not ready:
                timed_out = True
                break
            chunk = os.read(read_end, 8192)
            if not chunk:
                break
            answer += chunk
    finally:
        os.close(read_end)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # the engine may have reaped it already
            os.waitpid(pid, 0)
        shutil.rmtree(metrics, ignore_errors=True)
    text = answer.decode(errors="replace")
    if text == "ok":
        return None
    if text.startswith("no"):
        return text[2:]
    if timed_out:
        return f"{config.source}: cannot start workers: building the service took more than {timeout:g} s"
    return f"{config.source}: cannot start workers: building the service killed the process"


class ConfigGuard:
    """Holds the config in force; a reload replaces it only with one that validates, suits the host and
    builds. With ``last_good``, the accepted file is also copied there (0600) for workers to read."""

    def __init__(self, path: str | None, workers: int, active: Config, last_good: Path | None = None) -> None:
        self.path = path
        self.workers = workers
        self.active = active
        self.last_good = last_good
        if last_good is not None and path:
            write_private(last_good, Path(path).read_bytes())

    def reload(self) -> Config:
        try:
            data = Path(self.path).read_bytes() if self.path else b""
            candidate = load_checked(self.path, self.workers)
        except (ConfigError, OSError) as exc:
            return self._reject(str(exc))
        problem = probe(candidate)
        if problem is not None:
            return self._reject(problem)
        if self.last_good is not None and self.path:
            write_private(self.last_good, data)
        self.active = candidate
        announce("config_reloaded", logging.WARNING, source=candidate.source)
        return candidate

    def _reject(self, problem: str) -> Config:
        announce("config_rejected", logging.ERROR, error=redacted(problem), kept=self.active.source)
        return self.active


def load_for_worker() -> Config:
    """A worker's config (:mod:`tokenguard.wsgi`): the copy the guard accepted last, when an engine keeps
    one, else ``$TOKENGUARD_CONFIG`` (another WSGI server)."""
    return load_config(os.environ.get(LAST_GOOD_ENV) or os.environ.get("TOKENGUARD_CONFIG") or None)
