"""The reload guard every engine shares: a new config is applied only if it is valid, else the last
valid one stays in force and the reason is logged (contract, "Shared state").

gunicorn re-reads the config in its master on SIGHUP (:meth:`ConfigGuard.reload`); granian respawns
workers that each read it (:func:`load_for_worker`), so the last valid file is kept under the state
directory, private (0600: a config may hold a nonce or client secret).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tokenguard.files import write_private
from tokenguard.settings import Config, ConfigError, load_config
from tokenguard.web.logs import configure_logging, event

LAST_GOOD_ENV = "TOKENGUARD_LAST_GOOD_CONFIG"
WORKERS_ENV = "TOKENGUARD_WORKERS"


def refusal(config: Config, workers: int, dev: bool = False) -> str | None:
    """Why ``config`` cannot be served with ``workers`` processes, or None."""
    if config.replay.store == "memory" and workers > 1 and not dev:
        return (f"'memory' keeps DPoP jti values inside one process, so with {workers} workers a replayed "
                "proof reaching another worker would be accepted; use 'embedded' (default, shared by all "
                "workers on this host), a redis:// URL, or --workers 1")
    from tokenguard.settings.replay import replay_store_refusal  # opens a Redis connection: only when asked

    return replay_store_refusal(config)


def load_checked(path: str | None, workers: int) -> Config:
    """Load and validate ``path`` for a server with ``workers`` processes (ConfigError on any problem)."""
    config = load_config(path)
    problem = refusal(config, workers)
    if problem:
        raise ConfigError(config.source, "replay.store", problem)
    return config


class ConfigGuard:
    """Holds the config in force; a reload replaces it only with one that validates."""

    def __init__(self, path: str | None, workers: int, active: Config) -> None:
        self.path = path
        self.workers = workers
        self.active = active

    def reload(self) -> Config:
        try:
            candidate = load_checked(self.path, self.workers)
        except ConfigError as exc:
            event("config_rejected", logging.ERROR, error=str(exc), kept=self.active.source)
            return self.active
        self.active = candidate
        event("config_reloaded", logging.WARNING, source=candidate.source)
        return candidate


def keep_last_good(path: str, config: Config) -> Path:
    """Copy a validated config file to the state directory (0600) for workers that respawn later."""
    last_good = config.state_dir / "last-good-config.toml"
    write_private(last_good, Path(path).read_bytes())
    return last_good


def load_for_worker() -> Config:
    """A respawned worker's config: the file named by ``$TOKENGUARD_CONFIG`` if it validates, else the
    last good copy; a new valid file becomes the last good copy."""
    path = os.environ.get("TOKENGUARD_CONFIG") or None
    last_good = os.environ.get(LAST_GOOD_ENV)
    workers = int(os.environ.get(WORKERS_ENV, "1"))
    try:
        config = load_checked(path, workers)
    except ConfigError as exc:
        if not (path and last_good and Path(last_good).exists()):
            raise
        configure_logging()
        event("config_rejected", logging.ERROR, error=str(exc), kept=last_good)
        return load_config(last_good)
    if path and last_good and Path(path).read_bytes() != Path(last_good).read_bytes():
        configure_logging()
        event("config_reloaded", logging.WARNING, source=config.source)
        write_private(Path(last_good), Path(path).read_bytes())
    return config
