"""A WSGI entry point for other servers: ``application`` is built from ``$TOKENGUARD_CONFIG``.

``tokenguard serve`` does not use it (its engines build the app themselves); a server that re-imports this
module in fresh workers gets the last valid config when the file no longer validates
(:mod:`tokenguard.serving.reload`). The server must keep the request-integrity guarantees
(docs/ARCHITECTURE.md, "a serving engine"): granian's WSGI mode, for one, does not.
"""

from __future__ import annotations

import gc

from tokenguard.serving.reload import load_for_worker
from tokenguard.settings.wiring import build_service
from tokenguard.web.app import create_app

_config = load_for_worker()
application = create_app(build_service(_config), log_level=_config.server.log_level)
gc.collect()
gc.freeze()  # start-up objects live as long as the worker: keep them out of every collection
