"""A WSGI entry point for other servers: ``application`` is built from ``$TOKENGUARD_CONFIG``.

``tokenguard serve`` runs it under granian when ``server.engine = "granian"``. granian re-imports this
module in fresh workers on SIGHUP, so the same guarantee as under gunicorn is kept here: a new config
that does not validate is refused (and logged) and the workers keep the last valid one, which
``serve`` and every successful load keep in ``$TOKENGUARD_LAST_GOOD_CONFIG``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
from pathlib import Path

from tokenguard.settings import Config, ConfigError, load_config
from tokenguard.web.app import configure_logging, create_app

log = logging.getLogger("tokenguard")


def _load() -> Config:
    path = os.environ.get("TOKENGUARD_CONFIG") or None
    last_good = os.environ.get("TOKENGUARD_LAST_GOOD_CONFIG")
    workers = int(os.environ.get("TOKENGUARD_WORKERS", "1"))
    try:
        config = load_config(path)
        if config.replay["store"] == "memory" and workers > 1:
            raise ConfigError(config.source, "replay.store",
                              f"'memory' is one process's store; refused with {workers} workers")
    except ConfigError as exc:
        if not (path and last_good and Path(last_good).exists()):
            raise
        configure_logging()
        log.error(json.dumps({"event": "config_rejected", "error": str(exc)}))
        return load_config(last_good)
    if path and last_good and Path(path).read_bytes() != Path(last_good).read_bytes():
        configure_logging()
        log.warning(json.dumps({"event": "config_reloaded", "source": config.source}))
        temporary = f"{last_good}.{os.getpid()}"
        shutil.copyfile(path, temporary)
        os.replace(temporary, last_good)
    return config


application = create_app(_load())
gc.collect()
gc.freeze()  # start-up objects live as long as the worker: keep them out of every collection
