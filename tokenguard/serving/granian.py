"""granian's WSGI mode: each worker builds the app from :mod:`tokenguard.wsgi`.

On SIGHUP granian respawns its workers; first the master's reload hook asks the :class:`ConfigGuard`,
which copies a config it accepts to the last-good file the workers read, and leaves the copy alone
when it refuses one, so respawned workers keep serving the config in force. granian's own log lines are
tokenguard's JSON lines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tokenguard.serving import Launch
from tokenguard.serving.reload import LAST_GOOD_ENV, ConfigGuard

LOG_CONFIG: dict[str, Any] = {  # granian's loggers (as granian.log names them) through tokenguard's formatter
    "formatters": {"json": {"()": "tokenguard.web.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {"_granian": {"handlers": ["console"], "level": "WARNING", "propagate": False},
                "granian.access": {"handlers": ["console"], "level": "WARNING", "propagate": False}},
}


def serve(launch: Launch) -> int:
    try:
        from granian import Granian
        from granian.constants import Interfaces
        from granian.log import LogLevels
    except ImportError:
        print("tokenguard: server.engine = granian needs the granian package "
              "(pip install 'tokenguard[granian]')", file=sys.stderr)
        return 2
    last_good = launch.config.state_dir / "last-good-config.toml"
    guard = ConfigGuard(launch.path, launch.workers, launch.config, last_good=last_good if launch.path else None)
    if launch.path:
        os.environ[LAST_GOOD_ENV] = str(last_good)
    options: dict[str, Any] = {"interface": Interfaces.WSGI, "workers": launch.workers, "websockets": False,
                               "respawn_failed_workers": True, "log_level": LogLevels.warning,
                               "log_dictconfig": LOG_CONFIG,
                               "blocking_threads": 1}  # one request at a time per worker, as gunicorn sync
    if launch.listen.startswith("unix:"):
        options["uds"] = Path(launch.listen[len("unix:"):])
    else:
        host, _, port = launch.listen.rpartition(":")
        options.update(address=host.strip("[]"), port=int(port))
    server = Granian("tokenguard.wsgi:application", **options)
    server.on_startup(launch.listening)
    server.on_reload(guard.reload)
    server.serve()
    return 0
