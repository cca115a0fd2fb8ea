"""The service: ``/auth`` and ``/envoy/<path>`` for proxies, ``/healthz``, ``/readyz``, ``/metrics``.

The auth endpoints are answered by a plain WSGI callable placed in front of Flask (:class:`Dispatch`):
every request a proxy sends goes through it, so it does no per-request work that can be done once at
start-up. Flask serves only the operator endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from tokenguard.core.verifier import Verifier
from tokenguard.web.environ import incoming_from_environ
from tokenguard.web.logs import configure_logging, event
from tokenguard.web.operations import OPERATIONS, Reply
from tokenguard.web.service import AuthService

StartResponse = Callable[..., Any]
_REASONS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden",
            500: "500 Internal Server Error", 503: "503 Service Unavailable"}


class Dispatch:
    """Send auth sub-requests straight to the :class:`AuthService`, everything else to Flask."""

    def __init__(self, flask_app: Callable[..., Iterable[bytes]], service: AuthService) -> None:
        self.flask_app = flask_app
        self.service = service

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.service.handles(environ.get("PATH_INFO", "")):
            return self.flask_app(environ, start_response)
        answer = self.service.handle(incoming_from_environ(environ))
        start_response(_REASONS.get(answer.status, f"{answer.status} Error"),
                       [*answer.headers, ("Content-Length", "0"), ("Content-Type", "text/plain")])
        return [b""]


def create_app(service: AuthService, *, log_level: str = "info") -> Flask:
    """The WSGI application around an :class:`AuthService` (built by :func:`tokenguard.settings.wiring`)."""
    configure_logging(log_level)
    verifier = service.verifier
    app = Flask("tokenguard")
    app.extensions["tokenguard"] = verifier

    def view(endpoint: Callable[[Verifier], Reply]) -> Callable[[], Response]:
        def answer() -> Response:
            reply = endpoint(verifier)
            return Response(reply.body, status=reply.status, content_type=reply.content_type)

        return answer

    for path, endpoint in OPERATIONS.items():
        app.add_url_rule(path, path.strip("/"), view(endpoint), methods=["GET"])

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response | HTTPException:  # fail closed, no traceback
        if isinstance(exc, HTTPException):
            return exc
        event("internal_error", logging.ERROR, error=type(exc).__name__)
        return Response("internal error\n", status=500, mimetype="text/plain")

    app.wsgi_app = Dispatch(app.wsgi_app, service)  # type: ignore[method-assign]
    return app
