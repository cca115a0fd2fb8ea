"""A world for ``tokenguard explain`` tests: a real issuer over HTTP, a config file, and ``/auth`` to compare.

The issuer (metadata, JWKS, introspection) runs on a free loopback port, as the service would reach it.
Tokens and proofs are signed here with joserfc's algorithms over hand-built JOSE segments, never with the
code under test, so a test can build any malformed input. :meth:`World.auth` asks the real ``/auth``
(the Flask app built from the same config file) what it answers, to hold ``explain`` to it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core.helpers import DROP, _override, b64u, b64u_json, public_key_jwk, sign_jws, thumb
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey, RSAKey

__all__ = ["AUD", "CONFIG", "DROP", "NONCE_SECRET", "Issuer", "World", "b64u_json", "jkt", "make_certificates",
           "running", "x5t"]

AUD = "https://api.test"
NONCE_SECRET = "explain-tests-nonce-secret-0123456789"


def jkt(key: Any) -> str:
    return thumb(public_key_jwk(key))


def x5t(cert: x509.Certificate) -> str:
    return b64u(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


@dataclass
class Issuer:
    """The authorization server: RFC 8414 metadata, a JWKS, and RFC 7662 introspection of opaque tokens."""

    url: str = ""
    key: Any = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "as-1"}, private=True))
    active: dict[str, dict[str, Any]] = field(default_factory=dict)  # opaque token -> introspection answer

    def handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: Any, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/oauth-authorization-server":
                    return self._reply({"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                                        "introspection_endpoint": issuer.url + "/introspect"})
                if self.path == "/jwks":
                    return self._reply({"keys": [dict(issuer.key.as_dict(private=False), use="sig", alg="RS256")]})
                return self._reply({}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                return self._reply(issuer.active.get(form.get("token", ""), {"active": False}))

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        return Handler


@contextmanager
def running(issuer: Issuer) -> Iterator[Issuer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), issuer.handler())
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


CONFIG = """\
[server]
state_dir = "{state}"
log_decisions = false

[token]
audience = "{aud}"

[[issuer]]
issuer = "{issuer}"
introspection_client_id = "rs1"
introspection_client_secret = "rs1-secret"

[dpop]
nonce_secret = "{nonce}"

[replay]
store = "embedded"

[[route]]
name = "dpop"
path = "/dpop/*"
binding = "dpop"
scopes = ["read"]

[[route]]
name = "nonce"
path = "/nonce/*"
binding = "dpop"
dpop_nonce = true

[[route]]
name = "mtls"
path = "/mtls/*"
binding = "mtls"

[[route]]
name = "any"
path = "/any/*"
binding = "any"
claims = [{{ path = "tier", equals = "gold" }}]

[[route]]
name = "scoped"
path = "/scoped/*"
binding = "any"
scopes = ["admin"]
"""


@dataclass
class World:
    issuer: Issuer
    config: Path
    k1: Any = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))
    k2: Any = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))
    attacker: Any = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    cert1: x509.Certificate | None = None
    cert2: x509.Certificate | None = None
    cert_files: dict[str, Path] = field(default_factory=dict)
    _apps: dict[Path, Any] = field(default_factory=dict)

    # -- tokens ------------------------------------------------------------------------------------
    def token(self, claims: Mapping[str, Any] | None = None, header: Mapping[str, Any] | None = None, *,
              key: Any = None, alg: str = "RS256") -> str:
        now = int(time.time())
        body = {"iss": self.issuer.url, "aud": AUD, "sub": "u1", "client_id": "c1", "iat": now, "exp": now + 600,
                "jti": str(uuid.uuid4()), "scope": "read", "tier": "gold"}
        head = {"typ": "at+jwt", "alg": alg, "kid": "as-1"}
        return sign_jws(_override(head, header), _override(body, claims), key or self.issuer.key, alg)

    def dpop_token(self, claims: Mapping[str, Any] | None = None, **options: Any) -> str:
        return self.token({"cnf": {"jkt": jkt(self.k1)}, **(claims or {})}, **options)

    def mtls_token(self) -> str:
        assert self.cert1 is not None
        return self.token({"cnf": {"x5t#S256": x5t(self.cert1)}})

    # -- proofs --------------------------------------------------------------------------------------
    def proof(self, url: str, token: str | None, claims: Mapping[str, Any] | None = None,
              header: Mapping[str, Any] | None = None, *, method: str = "GET", key: Any = None,
              sign_key: Any = None, alg: str = "ES256") -> str:
        key = key or self.k1
        parts = urlsplit(url)
        body: dict[str, Any] = {"jti": str(uuid.uuid4()), "htm": method,
                                "htu": f"{parts.scheme}://{parts.netloc}{parts.path}", "iat": int(time.time())}
        if token is not None:
            body["ath"] = b64u(hashlib.sha256(token.encode()).digest())
        head = {"typ": "dpop+jwt", "alg": alg, "jwk": public_key_jwk(key)}
        return sign_jws(_override(head, header), _override(body, claims), sign_key or key, alg)

    # -- the real /auth, for comparison ----------------------------------------------------------------
    def client(self, config: Path | None = None) -> Any:
        """A Flask test client of the real app built from ``config`` (the world's own by default)."""
        config = config or self.config
        if config not in self._apps:
            from tokenguard.settings import load_config
            from tokenguard.settings.wiring import build_service
            from tokenguard.web.app import create_app

            self._apps[config] = create_app(build_service(load_config(config)), log_level="error").test_client()
        return self._apps[config]

    def auth(self, method: str, url: str, headers: list[tuple[str, str]], config: Path | None = None) -> Any:
        """What ``/auth`` answers when nginx describes ``method url`` with ``headers``."""
        parts = urlsplit(url)
        described = [("X-Original-Method", method),
                     ("X-Original-URI", parts.path + (f"?{parts.query}" if parts.query else "")),
                     ("X-Forwarded-Proto", parts.scheme), ("X-Forwarded-Host", parts.hostname or ""),
                     ("X-Forwarded-Port", str(parts.port or (443 if parts.scheme == "https" else 80)))]
        return self.client(config).get("/auth", headers=[*described, *headers])


def make_certificates(directory: Path) -> tuple[x509.Certificate, x509.Certificate, dict[str, Path]]:
    from support import self_signed_cert

    files = {}
    certs = []
    for name in ("cert1", "cert2"):
        cert = self_signed_cert(ec.generate_private_key(ec.SECP256R1()), cn=name)
        path = directory / f"{name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[name] = path
        certs.append(cert)
    return certs[0], certs[1], files
