"""A WSGI entry point for other servers: ``application`` is built from ``$TOKENGUARD_CONFIG``.

``tokenguard serve`` runs it under granian when ``server.engine = "granian"``; granian re-imports this
module in fresh workers on SIGHUP, and they build from the config the master's reload guard accepted
last (:mod:`tokenguard.serving.reload`).
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
