"""granian's WSGI mode: each worker builds the app from :mod:`tokenguard.wsgi`.

On SIGHUP granian respawns the workers; a config that no longer validates is refused there in favour
of the last valid one (:func:`tokenguard.serving.reload.load_for_worker`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tokenguard.serving import Launch
from tokenguard.serving.reload import LAST_GOOD_ENV, WORKERS_ENV, keep_last_good


def serve(launch: Launch) -> int:
    try:
        from granian import Granian
        from granian.constants import Interfaces
        from granian.log import LogLevels
    except ImportError:
        print("tokenguard: server.engine = granian needs the granian package "
              "(pip install 'tokenguard[granian]')", file=sys.stderr)
        return 2
    os.environ[WORKERS_ENV] = str(launch.workers)
    if launch.path:
        os.environ["TOKENGUARD_CONFIG"] = os.path.abspath(launch.path)
        os.environ[LAST_GOOD_ENV] = str(keep_last_good(launch.path, launch.config))
    options: dict[str, Any] = {"interface": Interfaces.WSGI, "workers": launch.workers, "websockets": False,
                               "respawn_failed_workers": True, "log_level": LogLevels.warning,
                               "blocking_threads": 1}  # one request at a time per worker, as gunicorn sync
    if launch.listen.startswith("unix:"):
        options["uds"] = Path(launch.listen[len("unix:"):])
    else:
        host, _, port = launch.listen.rpartition(":")
        options.update(address=host.strip("[]"), port=int(port))
    Granian("tokenguard.wsgi:application", **options).serve()
    return 0
