"""The suite's own mini authorization server (the ``--issuer`` the verifier is told to trust).

Serves RFC 8414 metadata, a JWKS (``as-1``; ``as-2`` too after :meth:`MiniIssuer.rotate`,
docs/conformance-cases.md, JWT-RS-09) and an RFC 7662 introspection endpoint whose answers the cases
script per opaque token (BIND-RS-10, MTLS-RS-09, JWT-RS-13). It counts JWKS fetches so that refresh
behaviour (JWT-RS-09/10) is observable from outside the verifier.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


class _Quiet(ThreadingHTTPServer):
    """No access log and no tracebacks: the results table is the suite's only output."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up is not the suite's business."""


class MiniIssuer:
    """A threaded stdlib HTTP server acting as issuer ``issuer_url`` (RFC 8414 §3, RFC 7662 §2)."""

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
        self._server = _Quiet((host, port), _handler_for(self))
        if ctx is not None:
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
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
        return int(self._server.server_address[1])

    # ---- scripting
    def rotate(self) -> None:
        """Start serving ``as-2`` beside ``as-1`` (JWT-RS-09, docs/conformance-cases.md)."""
        self.rotated = True

    def script(self, token: str, body: dict[str, Any] | None = None, status: int = 200) -> None:
        """Script the introspection answer for one opaque token."""
        self._scripts[token] = IntrospectionScript(body=body, status=status)

    def jwks_fetches(self) -> int:
        with self.stats.lock:
            return self.stats.jwks_fetches

    def snapshot(self) -> tuple[int, int, int, int]:
        """(metadata, jwks, introspection, introspection-auth-failure) counts, for the pre-flight."""
        with self.stats.lock:
            s = self.stats
            return s.metadata_fetches, s.jwks_fetches, s.introspections, s.introspection_auth_failures

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

    # ---- HTTP
    def answer(self, method: str, path: str, authorization: str, form: dict[str, str]) -> tuple[int, Any, bool]:
        """(status, JSON body, whether to add a Basic challenge) for one request."""
        wk = "/.well-known/oauth-authorization-server"
        oidc = "/.well-known/openid-configuration"
        if method == "GET" and path in (wk + self._path, self._path + wk, oidc + self._path, self._path + oidc):
            with self.stats.lock:
                self.stats.metadata_fetches += 1
            return 200, self.metadata(), False
        if method == "GET" and path == self._path + "/jwks":
            with self.stats.lock:
                self.stats.jwks_fetches += 1
            return 200, self.fixtures.jwks(self.rotated), False
        if method == "POST" and path == self._path + "/introspect":
            return self._introspect(authorization, form)
        return 404, {"error": "not_found"}, False

    def _authenticated(self, header: str) -> bool:
        """RFC 7662 §2.1: the protected resource authenticates (client_secret_basic, RFC 6749 §2.3.1)."""
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

    def _introspect(self, authorization: str, form: dict[str, str]) -> tuple[int, Any, bool]:
        with self.stats.lock:
            self.stats.introspections += 1
        if not self._authenticated(authorization):
            with self.stats.lock:
                self.stats.introspection_auth_failures += 1
            return 401, {"error": "invalid_client"}, True
        token = form.get("token")
        if not token:
            return 400, {"error": "invalid_request"}, False
        scripted = self._scripts.get(token)
        if scripted is None:
            return 200, {"active": False}, False
        if scripted.status != 200:
            return scripted.status, {"error": "temporarily_unavailable"}, False
        return 200, scripted.body or {"active": False}, False


def _handler_for(issuer: MiniIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"))) if method == "POST" else {}
            path = urllib.parse.urlsplit(self.path).path
            status, body, challenge = issuer.answer(method, path, self.headers.get("Authorization", ""), form)
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            if challenge:
                self.send_header("WWW-Authenticate", 'Basic realm="conformance"')
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            """Silent: the results table must stay readable (issue 13)."""

    return Handler
