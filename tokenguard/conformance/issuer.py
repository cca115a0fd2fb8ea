"""The suite's own mini authorization server (the ``--issuer`` the verifier is told to trust).

Serves RFC 8414 metadata, a JWKS (``as-1``; ``as-2`` too after :meth:`MiniIssuer.rotate`,
spec JWT-RS-09) and an RFC 7662 introspection endpoint whose answers the cases script per
opaque token (BIND-RS-10, MTLS-RS-09, JWT-RS-13). It counts JWKS fetches so that refresh
behaviour (JWT-RS-09/10) is observable from outside the verifier.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from .minting import Fixtures


@dataclass
class IntrospectionScript:
    """What ``/introspect`` answers for one opaque token: a JSON body or an HTTP failure."""

    body: dict[str, Any] | None = None
    status: int = 200


@dataclass
class IssuerStats:
    jwks_fetches: int = 0
    metadata_fetches: int = 0
    introspections: int = 0
    introspection_auth_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class MiniIssuer:
    """A threaded WSGI server acting as issuer ``issuer_url`` (RFC 8414 §3, RFC 7662 §2)."""

    def __init__(self, fixtures: Fixtures, issuer_url: str, client_id: str, client_secret: str,
                 *, bind_host: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None) -> None:
        self.fixtures = fixtures
        self.issuer = issuer_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.rotated = False
        self.stats = IssuerStats()
        self._scripts: dict[str, IntrospectionScript] = {}
        parsed = urllib.parse.urlsplit(issuer_url)
        self._path = parsed.path.rstrip("/")
        host = bind_host or parsed.hostname or "127.0.0.1"
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        ctx = None
        if parsed.scheme == "https":
            if not (tls_cert and tls_key):
                raise ValueError("an https --issuer needs --issuer-tls-cert and --issuer-tls-key")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls_cert, tls_key)
        self._server: BaseWSGIServer = make_server(host, port, self._wsgi, threaded=True,
                                                   ssl_context=ctx)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mini-issuer",
                                        daemon=True)

    # ---- lifecycle
    def start(self) -> MiniIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MiniIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    # ---- scripting
    def rotate(self) -> None:
        """Start serving ``as-2`` beside ``as-1`` (spec JWT-RS-09)."""
        self.rotated = True

    def script(self, token: str, body: dict[str, Any] | None = None, status: int = 200) -> None:
        """Script the introspection answer for one opaque token."""
        self._scripts[token] = IntrospectionScript(body=body, status=status)

    def jwks_fetches(self) -> int:
        with self.stats.lock:
            return self.stats.jwks_fetches

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 §2 metadata; endpoint URLs are under the issuer identifier."""
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/jwks",
            "introspection_endpoint": f"{base}/introspect",
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint": f"{base}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "dpop_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
            "tls_client_certificate_bound_access_tokens": True,
        }

    # ---- WSGI
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        wk = "/.well-known/oauth-authorization-server"
        if path in (wk + self._path, self._path + wk, "/.well-known/openid-configuration" + self._path,
                    self._path + "/.well-known/openid-configuration"):
            with self.stats.lock:
                self.stats.metadata_fetches += 1
            return _json(self.metadata())
        if path == self._path + "/jwks":
            with self.stats.lock:
                self.stats.jwks_fetches += 1
            return _json(self.fixtures.jwks(self.rotated))
        if path == self._path + "/introspect" and request.method == "POST":
            return self._introspect(request)
        return _json({"error": "not_found"}, 404)

    def _authenticated(self, request: Request) -> bool:
        """RFC 7662 §2.1: the protected resource authenticates (client_secret_basic, RFC 6749 §2.3.1)."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        cid, _, secret = raw.partition(":")
        return (urllib.parse.unquote_plus(cid) == self.client_id
                and urllib.parse.unquote_plus(secret) == self.client_secret)

    def _introspect(self, request: Request) -> Response:
        with self.stats.lock:
            self.stats.introspections += 1
        if not self._authenticated(request):
            with self.stats.lock:
                self.stats.introspection_auth_failures += 1
            resp = _json({"error": "invalid_client"}, 401)
            resp.headers["WWW-Authenticate"] = 'Basic realm="conformance"'
            return resp
        token = request.form.get("token")
        if not token:
            return _json({"error": "invalid_request"}, 400)
        scripted = self._scripts.get(token)
        if scripted is None:
            return _json({"active": False})
        if scripted.status != 200:
            return _json({"error": "temporarily_unavailable"}, scripted.status)
        return _json(scripted.body or {"active": False})


def _json(obj: Any, status: int = 200) -> Response:
    resp = Response(json.dumps(obj), status=status, content_type="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp
