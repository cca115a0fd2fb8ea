"""A WSGI entry point for other servers: ``application`` is built from ``$TOKENGUARD_CONFIG``.

``tokenguard serve`` does not use it (its engines build the app themselves); a server that re-imports this
module in fresh workers gets a new config only if it validates, else the last valid one
(:mod:`tokenguard.serving.reload`). The server must keep the request-integrity guarantees (README, "Request
integrity"; docs/ARCHITECTURE.md, "a serving engine"): drop header names with underscores (WSGI reads
``X_Foo`` as ``X-Foo``) and build each environ from the request alone.
"""

from __future__ import annotations

import gc

from tokenguard.serving.reload import load_for_worker
from tokenguard.settings.wiring import build_service, start_key_refresh
from tokenguard.web.app import create_app

_config = load_for_worker()
_service = build_service(_config)
application = create_app(_service, log_level=_config.server.log_level)
start_key_refresh(_service)
gc.collect()
gc.freeze()  # start-up objects live as long as the worker: keep them out of every collection
