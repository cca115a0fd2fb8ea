"""Small local stand-ins for the CLI tests: a DPoP resource server and an authorization server."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.errors import InvalidDpopProof, UseDpopNonce
from tokenguard.core.nonce import AS_LABEL, RS_LABEL, NonceIssuer
from tokenguard.core.replay.memory import MemoryReplayStore

ALGS = ("ES256", "EdDSA", "RS256", "PS256")


def fake_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (unsigned: these stand-ins only look at its claims)."""
    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'typ': 'at+jwt', 'alg': 'ES256'})}.{seg(claims)}.c2ln"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
           headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def resource_server(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    """``/r...``: demands a nonce (once per client), then checks the proof with ``DpopVerifier``.

    ``/always-nonce``: always asks for a nonce (the client must retry only once).
    ``/nonce-header``: a 401 whose challenge is not use_dpop_nonce but which carries DPoP-Nonce.
    ``/echo``: 200 with what it received.
    """
    verifier = DpopVerifier(algs=ALGS, replay=MemoryReplayStore(), nonces=NonceIssuer(b"r" * 32, RS_LABEL))

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            record = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                      "dpop": self.headers.get_all("DPoP") or [], "body": body}
            recorder.requests.append(record)
            path = self.path.split("?")[0]
            if path == "/echo":
                return _reply(self, 200, record)
            if path == "/always-nonce":
                return _reply(self, 401, {}, {"WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="ES256"',
                                               "DPoP-Nonce": "n-" + str(len(recorder.requests))})
            if path == "/nonce-header":
                return _reply(self, 401, {}, {"WWW-Authenticate": 'DPoP error="invalid_token"',
                                               "DPoP-Nonce": "header-only"})
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme != "DPoP":
                return _reply(self, 401, {"error": "wrong scheme"}, {"WWW-Authenticate": 'DPoP algs="ES256"'})
            htu = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
            try:
                proof = verifier.verify(record["dpop"], htm=self.command, htu=htu, access_token=token,
                                        require_nonce=True)
            except UseDpopNonce as exc:
                return _reply(self, 401, {}, {
                    "WWW-Authenticate": f'DPoP error="use_dpop_nonce", error_description="{exc.description}", '
                                        'algs="ES256 EdDSA"',
                    "DPoP-Nonce": exc.nonce})
            except InvalidDpopProof as exc:
                return _reply(self, 401, {"reason": exc.reason},
                              {"WWW-Authenticate": 'DPoP error="invalid_dpop_proof"', "X-Auth-Error": exc.reason})
            return _reply(self, 200, {"jkt": proof.jkt, "htm": proof.htm, "htu": proof.htu})

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    return Handler


def authorization_server(recorder: Recorder, *, secret: str = "s3cret", nonce: bool = True,
                         mtls_alias: str | None = None) -> type[BaseHTTPRequestHandler]:
    """RFC 8414 metadata and a client_credentials token endpoint with RFC 9449 §8 nonces."""
    verifier = DpopVerifier(algs=ALGS, replay=MemoryReplayStore(), nonces=NonceIssuer(b"a" * 32, AS_LABEL))

    class Handler(BaseHTTPRequestHandler):
        def _base(self) -> str:
            return f"http://127.0.0.1:{self.server.server_address[1]}"

        def do_GET(self) -> None:
            recorder.requests.append({"method": "GET", "path": self.path})
            if self.path == "/.well-known/oauth-authorization-server":
                metadata: dict[str, Any] = {"issuer": self._base(), "token_endpoint": self._base() + "/token",
                                            "token_endpoint_auth_methods_supported": ["client_secret_basic"]}
                if mtls_alias:
                    metadata["mtls_endpoint_aliases"] = {"token_endpoint": mtls_alias}
                return _reply(self, 200, metadata)
            return _reply(self, 404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            record = {"method": "POST", "path": self.path, "form": form, "headers": dict(self.headers.items()),
                      "dpop": self.headers.get_all("DPoP") or []}
            recorder.requests.append(record)
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"client1:{secret}".encode()).decode()
            if auth != expected and form.get("client_secret") != secret:
                return _reply(self, 401, {"error": "invalid_client", "error_description": "bad secret"})
            jkt = None
            if record["dpop"]:
                try:
                    jkt = verifier.verify(record["dpop"], htm="POST", htu=self._base() + "/token",
                                          require_nonce=nonce).jkt
                except UseDpopNonce as exc:
                    return _reply(self, 400, {"error": "use_dpop_nonce"}, {"DPoP-Nonce": exc.nonce})
                except InvalidDpopProof as exc:
                    return _reply(self, 400, {"error": "invalid_dpop_proof", "error_description": exc.reason})
            claims: dict[str, Any] = {"sub": "client1", "scope": form.get("scope", "")}
            if jkt:
                claims["cnf"] = {"jkt": jkt}
            return _reply(self, 200, {"access_token": fake_jwt(claims), "token_type": "DPoP" if jkt else "Bearer",
                                      "expires_in": 600, "scope": claims["scope"]}, {"Cache-Control": "no-store"})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    return Handler
