"""The Flask service: ``/auth`` and ``/envoy/<path>`` for proxies, ``/healthz``, ``/readyz``, ``/metrics``.

The auth endpoints are answered by a plain WSGI callable placed in front of Flask: every request a
proxy sends goes through it, so it does no per-request work that can be done once at start-up.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from tokenguard.core.replay import ReplayStoreUnavailable
from tokenguard.core.verifier import AuthRequest, Decision, Verifier
from tokenguard.settings import Config, build_verifier
from tokenguard.web import metrics
from tokenguard.web.adapters import ProxyAdapter

log = logging.getLogger("tokenguard")
decisions_log = logging.getLogger("tokenguard.decision")
StartResponse = Callable[..., Any]
_REASONS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden",
            500: "500 Internal Server Error", 503: "503 Service Unavailable"}


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("tokenguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class AuthEndpoint:
    """WSGI callable for ``/auth`` and ``/envoy/…``: adapter -> verifier -> response, plus log and metrics."""

    def __init__(self, verifier: Verifier, adapter: ProxyAdapter, *, log_decisions: bool = True) -> None:
        self.verifier = verifier
        self.adapter = adapter
        self.log_decisions = log_decisions
        self._counters: dict[tuple[str, str], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        try:
            request: AuthRequest = (self.adapter.envoy(environ) if path.startswith("/envoy")
                                    else self.adapter.auth_request(environ))
        except Exception as exc:  # an adapter bug must not become a traceback or an allow
            log.error(json.dumps({"event": "internal_error", "error": type(exc).__name__}))
            request = AuthRequest(method="GET", url="invalid:")
        decision = self.verifier.decide(request)
        elapsed = time.perf_counter() - started
        self._record(decision, request, elapsed)
        start_response(_REASONS.get(decision.status, f"{decision.status} Error"),
                       [*decision.headers, ("Content-Length", "0"), ("Content-Type", "text/plain")])
        return [b""]

    def _record(self, decision: Decision, request: AuthRequest, elapsed: float) -> None:
        result = "allow" if decision.allow else "deny" if decision.status in (400, 401, 403) else "error"
        counter = self._counters.get((result, decision.reason))
        if counter is None:  # label lookups cost more than the increment: keep each child once
            counter = self._counters[(result, decision.reason)] = metrics.DECISIONS.labels(
                result=result, reason=decision.reason)
        counter.inc()
        metrics.LATENCY.observe(elapsed)
        if decision.reason == "replay_store_unavailable":
            metrics.REPLAY_ERRORS.inc()
        if self.log_decisions or result == "error":
            # Never the token, the proof, the certificate or the query string: only the decision.
            decisions_log.info(json.dumps({
                "event": "decision", "result": result, "status": decision.status, "reason": decision.reason,
                "route": decision.route, "subject": decision.subject, "client_id": decision.client_id,
                "binding": decision.binding, "method": request.method,
                "path": "/" + request.url.split("?", 1)[0].split("://", 1)[-1].partition("/")[2][:200],
                "detail": decision.description if not decision.allow else None,
                "latency_ms": round(elapsed * 1000, 3)}, separators=(",", ":")))


class Dispatch:
    """Send auth sub-requests straight to :class:`AuthEndpoint`, everything else to Flask."""

    def __init__(self, flask_app: Callable[..., Iterable[bytes]], auth: AuthEndpoint) -> None:
        self.flask_app = flask_app
        self.auth = auth

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/auth" or path.startswith("/envoy/") or path == "/envoy":
            return self.auth(environ, start_response)
        return self.flask_app(environ, start_response)


def readiness(config: Config, verifier: Verifier) -> tuple[bool, dict[str, Any]]:
    """Ready when every issuer has signing keys (or an introspection endpoint) and the replay store answers."""
    checks: dict[str, Any] = {}
    ready = bool(config.issuers)
    if not config.issuers:
        checks["issuers"] = "no issuer configured"
    for issuer in verifier.tokens.issuers.values():
        if issuer.jwks is not None:
            issuer.jwks.load_if_due()
        ok = (issuer.jwks is not None and issuer.jwks.has_keys) or issuer.introspector is not None
        checks[f"issuer {issuer.issuer}"] = "ok" if ok else (issuer.jwks.last_error if issuer.jwks else "no keys")
        ready = ready and ok
    try:
        if verifier.dpop.replay is not None:
            verifier.dpop.replay.ping()
        checks["replay_store"] = "ok"
    except ReplayStoreUnavailable as exc:
        checks["replay_store"] = str(exc)
        ready = False
    return ready, checks


def create_app(config: Config, verifier: Verifier | None = None) -> Flask:
    """App factory. ``verifier`` may be injected (tests); otherwise it is built from ``config``."""
    configure_logging(config.server["log_level"])
    verifier = verifier or build_verifier(config, on_jwks_fetch=metrics.on_jwks_fetch)
    app = Flask("tokenguard")
    app.config["TOKENGUARD"] = config
    auth = AuthEndpoint(verifier, ProxyAdapter.from_config(config.server, config.mtls, config.proxy),
                        log_decisions=config.server["log_decisions"])
    app.extensions["tokenguard"] = verifier

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        ready, checks = readiness(config, verifier)
        return Response(json.dumps({"ready": ready, "checks": checks}) + "\n", status=200 if ready else 503,
                        mimetype="application/json")

    @app.get("/metrics")
    def metrics_view() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response | HTTPException:  # fail closed, no traceback
        if isinstance(exc, HTTPException):
            return exc
        log.error(json.dumps({"event": "internal_error", "error": type(exc).__name__}))
        return Response("internal error\n", status=500, mimetype="text/plain")

    app.wsgi_app = Dispatch(app.wsgi_app, auth)  # type: ignore[method-assign]
    return app
