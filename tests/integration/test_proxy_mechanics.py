"""The shipped nginx and Caddy configs, run for real in front of a stand-in auth service.

These tests pin the proxy mechanics tokenguard depends on (R-14 (docs/rules.md), MTLS-RS-10, SCOPE-RS-04,
DPOP-RS-29) independently of the verifier itself: which challenge headers reach the client and how
often, which headers reach the auth service and the app, and that a client cannot inject the
certificate, the original URI or an identity. The stand-in answers from a test header, so each case
is deterministic.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

import harness
import pytest
from support import wait_for

pytestmark = pytest.mark.integration

TOKEN = "eyJ0ZXN0IjoidG9rZW4ifQ.e30.c2ln"  # opaque to the stand-in; only its presence matters
CHALLENGE_401 = 'Bearer, DPoP algs="ES256 PS256 EdDSA"'
CHALLENGE_NONCE = 'DPoP error="use_dpop_nonce", error_description="nonce required", algs="ES256 PS256 EdDSA"'
CHALLENGE_403 = 'DPoP error="insufficient_scope", scope="write", algs="ES256 PS256 EdDSA"'
IDENTITY = {
    "X-Auth-Subject": "alice",
    "X-Auth-Client-Id": "client-1",
    "X-Auth-Scope": "read write",
    "X-Auth-Binding": "dpop",
    "X-Auth-Jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
}
IDENTITY_HEADERS = [*IDENTITY, "X-Auth-X5t-S256"]


class StandInAuth(BaseHTTPRequestHandler):
    """A 40-line tokenguard stand-in: the decision comes from the client's `X-Test-Decision` header.

    No Authorization -> 401 with a challenge; `nonce` -> 401 use_dpop_nonce + DPoP-Nonce; `scope` ->
    403 insufficient_scope; `two-challenges` -> 401 with the challenges on two lines; `error` -> 500;
    `mtls` -> 200 with an mTLS identity (no X-Auth-Jkt); anything else -> 200 with a DPoP identity.
    Every request it receives is recorded so tests can see what the proxy sent.
    """

    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(  # type: ignore[attr-defined]
            {
                "method": self.command,
                "path": self.path,
                "headers": list(self.headers.items()),
                "body": body.decode("latin-1"),
            }
        )
        decision = self.headers.get("X-Test-Decision", "allow")
        headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
        if not self.headers.get("Authorization"):
            status, headers = 401, [*headers, ("WWW-Authenticate", CHALLENGE_401), ("X-Auth-Error", "missing_token")]
        elif decision == "nonce":
            status, headers = (
                401,
                [
                    *headers,
                    ("WWW-Authenticate", CHALLENGE_NONCE),
                    ("DPoP-Nonce", "n-0123"),
                    ("X-Auth-Error", "use_dpop_nonce"),
                ],
            )
        elif decision == "scope":
            status, headers = (
                403,
                [*headers, ("WWW-Authenticate", CHALLENGE_403), ("X-Auth-Error", "insufficient_scope")],
            )
        elif decision == "two-challenges":
            status, headers = (
                401,
                [
                    *headers,
                    ("WWW-Authenticate", 'Bearer error="invalid_token"'),
                    ("WWW-Authenticate", 'DPoP algs="ES256"'),
                    ("X-Auth-Error", "token_expired"),
                ],
            )
        elif decision == "error":
            status, headers = 500, [*headers, ("X-Auth-Error", "jwks_unavailable")]
        elif decision == "mtls":
            status, headers = (
                200,
                [("X-Auth-Subject", "bob"), ("X-Auth-Binding", "mtls"), ("X-Auth-X5t-S256", "x5t-from-standin")],
            )
        else:
            status, headers = 200, list(IDENTITY.items())
        payload = json.dumps({"status": status}).encode()
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@dataclass
class Stack:
    """A running proxy with the stand-in auth behind it and the echo upstream as the protected app."""

    base: str
    auth: harness.ThreadedServer
    upstream: harness.ThreadedServer
    tls: harness.TLSMaterial
    extra_port: int = 0

    def call(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        *,
        body: bytes | None = None,
        cert: harness.ClientCert | None = None,
        base: str | None = None,
    ) -> harness.Response:
        self.auth.requests.clear()
        self.upstream.requests.clear()
        return harness.request(
            method, (base or self.base) + path, headers=headers or [], body=body, ca=self.tls.ca_path, client_cert=cert
        )

    def last_auth(self) -> dict[str, object]:
        assert len(self.auth.requests) == 1, f"expected exactly one auth sub-request: {self.auth.requests}"
        return self.auth.requests[0]

    def last_upstream(self) -> dict[str, object]:
        assert len(self.upstream.requests) == 1, f"expected one upstream request: {self.upstream.requests}"
        return self.upstream.requests[0]


def _one(record: dict[str, object], name: str) -> str:
    values = harness.header_values(record, name)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


@pytest.fixture(scope="module")
def stand_in_auth() -> Iterator[harness.ThreadedServer]:
    server = harness.serve_in_thread(StandInAuth)
    yield server
    server.close()


@pytest.fixture(scope="module")
def nginx_stack(
    tmp_path_factory: pytest.TempPathFactory,
    tls_material: harness.TLSMaterial,
    stand_in_auth: harness.ThreadedServer,
    echo_upstream: harness.ThreadedServer,
) -> Iterator[Stack]:
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    ports = harness.NginxPorts(
        listen=harness.free_port(),
        verifier=stand_in_auth.port,
        upstream=echo_upstream.port,
        idp_listen=harness.free_port(),
        idp=echo_upstream.port,
    )
    proc = harness.start_nginx(tmp_path_factory.mktemp("nginx"), ports, tls_material)
    try:
        yield Stack(
            f"https://localhost:{ports.listen}", stand_in_auth, echo_upstream, tls_material, extra_port=ports.idp_listen
        )
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def caddy_stack(
    tmp_path_factory: pytest.TempPathFactory,
    tls_material: harness.TLSMaterial,
    stand_in_auth: harness.ThreadedServer,
    echo_upstream: harness.ThreadedServer,
) -> Iterator[Stack]:
    if harness.require_binary("caddy") is None:
        pytest.skip("caddy is not installed (apt-get install caddy)")
    ports = harness.CaddyPorts(
        listen=harness.free_port(), verifier=stand_in_auth.port, upstream=echo_upstream.port, admin=harness.free_port()
    )
    proc = harness.start_caddy(tmp_path_factory.mktemp("caddy"), ports, tls_material)
    try:
        yield Stack(f"https://localhost:{ports.listen}", stand_in_auth, echo_upstream, tls_material)
    finally:
        proc.stop()


AUTHZ = ("Authorization", f"DPoP {TOKEN}")
PROOF = ("DPoP", "proof.a.b")


# ---------------------------------------------------------------------------------------------- nginx


def test_nginx_request_without_token_is_denied(nginx_stack: Stack) -> None:
    """The protected location really runs auth_request (no `return` short-circuit) and denies."""
    resp = nginx_stack.call("GET", "/resource")
    assert resp.status == 401
    assert resp.all("WWW-Authenticate") == [CHALLENGE_401]
    assert resp.one("X-Auth-Error") == "missing_token"
    assert resp.one("Cache-Control") == "no-store"
    assert nginx_stack.upstream.requests == []
    nginx_stack.last_auth()


def test_nginx_nonce_challenge_reaches_client_once(nginx_stack: Stack) -> None:
    """401 use_dpop_nonce: nginx copies WWW-Authenticate itself; the config must not add a second."""
    resp = nginx_stack.call("GET", "/resource", [AUTHZ, PROOF, ("X-Test-Decision", "nonce")])
    assert resp.status == 401
    assert resp.all("WWW-Authenticate") == [CHALLENGE_NONCE]
    assert resp.all("DPoP-Nonce") == ["n-0123"]
    assert resp.one("Cache-Control") == "no-store"
    assert nginx_stack.upstream.requests == []


def test_nginx_insufficient_scope_challenge_reaches_client(nginx_stack: Stack) -> None:
    """SCOPE-RS-04 through nginx: 403 plus its challenge (auth_request_set + add_header always)."""
    resp = nginx_stack.call("POST", "/resource", [AUTHZ, PROOF, ("X-Test-Decision", "scope")], body=b"x=1")
    assert resp.status == 403
    assert resp.all("WWW-Authenticate") == [CHALLENGE_403]
    assert resp.one("X-Auth-Error") == "insufficient_scope"
    assert resp.all("DPoP-Nonce") == []
    assert nginx_stack.upstream.requests == []


def test_nginx_two_challenge_lines_on_401(nginx_stack: Stack) -> None:
    """Documents why tokenguard puts all challenges on ONE line: nginx < 1.23 copies only the first."""
    resp = nginx_stack.call("GET", "/resource", [AUTHZ, ("X-Test-Decision", "two-challenges")])
    assert resp.status == 401
    got = resp.all("WWW-Authenticate")
    binary = harness.require_binary("nginx")
    assert binary is not None
    if harness.nginx_version(binary) < (1, 23):
        assert got == ['Bearer error="invalid_token"']  # the DPoP line is lost
    else:
        assert got == ['Bearer error="invalid_token"', 'DPoP algs="ES256"']


def test_nginx_allow_passes_identity_and_overwrites_client_headers(nginx_stack: Stack) -> None:
    """MTLS-RS-10 mechanics: the TLS certificate (CERT2) wins over a client-sent header (CERT1), and
    the original URI, method and identity headers cannot be injected by the client."""
    tls = nginx_stack.tls
    spoofed = [
        ("X-SSL-Client-Cert", tls.cert1.escaped_pem),
        ("X-Original-URI", "/evil"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Uri", "/evil"),
        ("X-Forwarded-Tls-Client-Cert", tls.cert1.base64_der),
        ("X-Auth-Subject", "mallory"),
        ("X-Auth-Scope", "admin"),
    ]
    resp = nginx_stack.call("PUT", "/resource/1?q=a%20b#frag", [AUTHZ, PROOF, *spoofed], body=b"{}", cert=tls.cert2)
    assert resp.status == 200, resp.body
    auth = nginx_stack.last_auth()
    port = nginx_stack.base.rsplit(":", 1)[1]
    assert _one(auth, "X-Original-URI") == "/resource/1?q=a%20b"
    assert _one(auth, "X-Original-Method") == "PUT"
    assert _one(auth, "X-Forwarded-Proto") == "https"
    assert _one(auth, "X-Forwarded-Host") == "localhost"
    assert _one(auth, "X-Forwarded-Port") == port
    assert harness.header_values(auth, "X-Forwarded-Uri") == []
    assert harness.header_values(auth, "X-Forwarded-Tls-Client-Cert") == []
    cert_header = _one(auth, "X-SSL-Client-Cert")
    assert unquote(cert_header).strip() == tls.cert2.pem.strip()
    assert cert_header == tls.cert2.escaped_pem.rstrip("%0A") or unquote(cert_header) == tls.cert2.pem
    assert _one(auth, "X-SSL-Client-Verify").startswith("FAILED")  # self-signed under optional_no_ca
    assert _one(auth, "Authorization") == f"DPoP {TOKEN}"
    assert _one(auth, "DPoP") == "proof.a.b"

    upstream = nginx_stack.last_upstream()
    for name, value in IDENTITY.items():
        assert _one(upstream, name) == value
    assert harness.header_values(upstream, "X-Auth-X5t-S256") == []
    assert harness.header_values(upstream, "X-Original-URI") == []
    assert unquote(_one(upstream, "X-SSL-Client-Cert")) == tls.cert2.pem
    assert upstream["path"] == "/resource/1?q=a%20b"
    assert upstream["body"] == "{}"


def test_nginx_missing_identity_header_is_not_filled_from_client(nginx_stack: Stack) -> None:
    """A header tokenguard leaves out (X-Auth-Jkt on an mTLS token) must not come from the client."""
    spoofed = [("X-Auth-Jkt", "attacker-jkt"), ("X-Auth-Client-Id", "attacker"), ("X-Auth-Error", "none")]
    resp = nginx_stack.call("GET", "/r", [AUTHZ, ("X-Test-Decision", "mtls"), *spoofed], cert=nginx_stack.tls.cert1)
    assert resp.status == 200
    upstream = nginx_stack.last_upstream()
    assert _one(upstream, "X-Auth-Subject") == "bob"
    assert _one(upstream, "X-Auth-Binding") == "mtls"
    assert _one(upstream, "X-Auth-X5t-S256") == "x5t-from-standin"
    for name in ("X-Auth-Jkt", "X-Auth-Client-Id", "X-Auth-Scope", "X-Auth-Error"):
        assert harness.header_values(upstream, name) == [], name


def test_nginx_without_client_cert_sends_no_cert_header(nginx_stack: Stack) -> None:
    """No TLS client certificate: the auth service sees no certificate at all, not the client's copy."""
    resp = nginx_stack.call("GET", "/r", [AUTHZ, ("X-SSL-Client-Cert", nginx_stack.tls.cert1.escaped_pem)])
    assert resp.status == 200
    auth = nginx_stack.last_auth()
    assert harness.header_values(auth, "X-SSL-Client-Cert") == []
    assert _one(auth, "X-SSL-Client-Verify") == "NONE"
    assert harness.header_values(nginx_stack.last_upstream(), "X-SSL-Client-Cert") == []


def test_nginx_body_not_forwarded_to_auth(nginx_stack: Stack) -> None:
    """R-14 (c): the sub-request carries no body and no Content-Length; the app still gets the body."""
    body = b"access_token=should-not-reach-auth&x=" + b"y" * 5000
    resp = nginx_stack.call("POST", "/form", [AUTHZ, ("Content-Type", "application/x-www-form-urlencoded")], body=body)
    assert resp.status == 200
    auth = nginx_stack.last_auth()
    assert auth["body"] == ""
    assert harness.header_values(auth, "Content-Length") in ([], ["0"])
    assert harness.header_values(auth, "Content-Type") == []
    assert nginx_stack.last_upstream()["body"] == body.decode()


def test_nginx_duplicate_dpop_headers_reach_auth_separately(nginx_stack: Stack) -> None:
    """R-12: nginx passes both DPoP lines through unfolded, so tokenguard can reject the request."""
    resp = nginx_stack.call("GET", "/r", [AUTHZ, ("DPoP", "proof.one.x"), ("DPoP", "proof.two.y")])
    assert resp.status == 200  # the stand-in allows; tokenguard would answer 401 invalid_request
    assert harness.header_values(nginx_stack.last_auth(), "DPoP") == ["proof.one.x", "proof.two.y"]


def test_nginx_duplicate_authorization_is_rejected_by_nginx(nginx_stack: Stack) -> None:
    """nginx refuses a second Authorization line with 400 before auth_request runs (never allowed)."""
    resp = nginx_stack.call("GET", "/r", [AUTHZ, ("Authorization", "Bearer other")])
    assert resp.status == 400
    assert nginx_stack.upstream.requests == []


def test_nginx_auth_failure_is_clean_500(nginx_stack: Stack) -> None:
    """tokenguard failing closed with 500 (or any non-2xx/401/403) gives the client a clean 500."""
    resp = nginx_stack.call("GET", "/r", [AUTHZ, ("X-Test-Decision", "error")])
    assert resp.status == 500
    assert json.loads(resp.body)["error"] == "server_error"
    assert resp.one("X-Auth-Error") == "jwks_unavailable"
    assert nginx_stack.upstream.requests == []


def test_nginx_verifier_down_is_clean_500(
    tmp_path: Path, tls_material: harness.TLSMaterial, echo_upstream: harness.ThreadedServer
) -> None:
    """Verifier unreachable: fail closed with the same clean 500, the app is never called."""
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    ports = harness.NginxPorts(
        listen=harness.free_port(),
        verifier=harness.free_port(),
        upstream=echo_upstream.port,
        idp_listen=harness.free_port(),
        idp=echo_upstream.port,
    )
    proc = harness.start_nginx(tmp_path / "nginx", ports, tls_material)
    try:
        echo_upstream.requests.clear()
        resp = harness.request("GET", f"https://localhost:{ports.listen}/r", headers=[AUTHZ], ca=tls_material.ca_path)
        assert resp.status == 500
        assert json.loads(resp.body)["error"] == "server_error"
        assert echo_upstream.requests == []
    finally:
        proc.stop()


def test_nginx_idp_mtls_alias_forwards_tls_certificate(nginx_stack: Stack) -> None:
    """idp-mtls.conf: the IdP gets the TLS certificate as escaped PEM, never the client's header."""
    base = f"https://localhost:{nginx_stack.extra_port}"
    tls = nginx_stack.tls
    resp = nginx_stack.call(
        "POST",
        "/token",
        [("X-SSL-Client-Cert", tls.cert2.escaped_pem)],
        body=b"grant_type=client_credentials",
        cert=tls.cert1,
        base=base,
    )
    assert resp.status == 200
    got = nginx_stack.last_upstream()
    assert unquote(_one(got, "X-SSL-Client-Cert")) == tls.cert1.pem
    assert got["body"] == "grant_type=client_credentials"
    resp = nginx_stack.call("POST", "/token", [("X-SSL-Client-Cert", tls.cert2.escaped_pem)], body=b"", base=base)
    assert harness.header_values(nginx_stack.last_upstream(), "X-SSL-Client-Cert") == []


# ---------------------------------------------------------------------------------------------- Caddy


def test_caddy_request_without_token_is_denied(caddy_stack: Stack) -> None:
    resp = caddy_stack.call("GET", "/resource")
    assert resp.status == 401
    assert resp.all("WWW-Authenticate") == [CHALLENGE_401]
    assert resp.one("X-Auth-Error") == "missing_token"
    assert caddy_stack.upstream.requests == []


def test_caddy_challenges_and_nonce_reach_client_once(caddy_stack: Stack) -> None:
    resp = caddy_stack.call("GET", "/resource", [AUTHZ, PROOF, ("X-Test-Decision", "nonce")])
    assert resp.status == 401
    assert resp.all("WWW-Authenticate") == [CHALLENGE_NONCE]
    assert resp.all("DPoP-Nonce") == ["n-0123"]
    assert resp.one("Cache-Control") == "no-store"
    resp = caddy_stack.call("POST", "/resource", [AUTHZ, PROOF, ("X-Test-Decision", "scope")], body=b"x")
    assert resp.status == 403
    assert resp.all("WWW-Authenticate") == [CHALLENGE_403]
    assert caddy_stack.upstream.requests == []


def test_caddy_allow_passes_identity_and_overwrites_client_headers(caddy_stack: Stack) -> None:
    """The certificate reaches tokenguard as base64 DER of the TLS certificate, not the client's copy;
    X-Forwarded-Method/Uri are forward_auth's own; identity headers reach the app once."""
    tls = caddy_stack.tls
    spoofed = [
        ("X-Forwarded-Tls-Client-Cert", tls.cert1.base64_der),
        ("X-SSL-Client-Cert", tls.cert1.escaped_pem),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/evil"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Auth-Subject", "mallory"),
    ]
    resp = caddy_stack.call("PUT", "/resource/1?q=a%20b", [AUTHZ, PROOF, *spoofed], body=b"{}", cert=tls.cert2)
    assert resp.status == 200, resp.body
    auth = caddy_stack.last_auth()
    port = caddy_stack.base.rsplit(":", 1)[1]
    # forward_auth rewrites to GET /auth but keeps the original query string: tokenguard ignores it.
    assert auth["method"] == "GET"
    assert auth["path"] == "/auth?q=a%20b"
    assert _one(auth, "X-Forwarded-Method") == "PUT"
    assert _one(auth, "X-Forwarded-Uri") == "/resource/1?q=a%20b"
    assert _one(auth, "X-Forwarded-Proto") == "https"
    assert _one(auth, "X-Forwarded-Host") == f"localhost:{port}"
    assert _one(auth, "X-Forwarded-Tls-Client-Cert") == tls.cert2.base64_der
    assert harness.header_values(auth, "X-SSL-Client-Cert") == []
    assert harness.header_values(auth, "X-Auth-Subject") == []
    assert _one(auth, "Authorization") == f"DPoP {TOKEN}"

    upstream = caddy_stack.last_upstream()
    for name, value in IDENTITY.items():
        assert _one(upstream, name) == value
    assert harness.header_values(upstream, "X-Auth-X5t-S256") == []
    assert _one(upstream, "X-Forwarded-Tls-Client-Cert") == tls.cert2.base64_der
    assert upstream["body"] == "{}"


def test_caddy_missing_identity_header_is_not_filled_from_client(caddy_stack: Stack) -> None:
    spoofed = [("X-Auth-Jkt", "attacker-jkt"), ("X-Auth-Client-Id", "attacker")]
    resp = caddy_stack.call("GET", "/r", [AUTHZ, ("X-Test-Decision", "mtls"), *spoofed], cert=caddy_stack.tls.cert1)
    assert resp.status == 200
    upstream = caddy_stack.last_upstream()
    assert _one(upstream, "X-Auth-Subject") == "bob"
    assert _one(upstream, "X-Auth-X5t-S256") == "x5t-from-standin"
    for name in ("X-Auth-Jkt", "X-Auth-Client-Id", "X-Auth-Scope"):
        assert harness.header_values(upstream, name) == [], name


def test_caddy_without_client_cert_sends_no_cert(caddy_stack: Stack) -> None:
    resp = caddy_stack.call("GET", "/r", [AUTHZ, ("X-Forwarded-Tls-Client-Cert", caddy_stack.tls.cert1.base64_der)])
    assert resp.status == 200
    assert harness.header_values(caddy_stack.last_auth(), "X-Forwarded-Tls-Client-Cert") == []
    assert harness.header_values(caddy_stack.last_upstream(), "X-Forwarded-Tls-Client-Cert") == []


def test_caddy_body_not_forwarded_and_dpop_lines_kept(caddy_stack: Stack) -> None:
    body = b"access_token=should-not-reach-auth&x=" + b"y" * 5000
    resp = caddy_stack.call("POST", "/form", [AUTHZ, ("DPoP", "proof.one.x"), ("DPoP", "proof.two.y")], body=body)
    assert resp.status == 200
    auth = caddy_stack.last_auth()
    assert auth["body"] == ""
    assert harness.header_values(auth, "DPoP") == ["proof.one.x", "proof.two.y"]
    assert caddy_stack.last_upstream()["body"] == body.decode()


# --------------------------------------------------------------------------- both: request integrity

UNDERSCORED = [("X_SSL_Client_Cert", "forged"), ("X_Original_URI", "/evil"), ("X_Forwarded_Tls_Client_Cert", "x"),
               ("X_Auth_Subject", "mallory"), ("x-auth_scope", "admin"), ("X_Forwarded_Host", "evil.example"),
               ("X-Forwarded_Uri", "/evil")]


@pytest.mark.parametrize("proxy", ["nginx_stack", "caddy_stack"])
def test_no_underscore_name_reaches_auth_or_app(request: pytest.FixtureRequest, proxy: str) -> None:
    """Issue 9 item 2: a CGI-style server (WSGI) reads X_Auth_Subject as X-Auth-Subject. nginx drops such
    names (underscores_in_headers off); the Caddyfile deletes them (request_header -*_*), every spelling."""
    stack: Stack = request.getfixturevalue(proxy)
    resp = stack.call("GET", "/resource", [AUTHZ, PROOF, *UNDERSCORED])
    assert resp.status == 200, resp.body
    for seen in (stack.last_auth(), stack.last_upstream()):
        names = [name for name, _ in seen["headers"]]  # type: ignore[union-attr]
        assert not [name for name in names if "_" in name], names


def test_caddy_client_forwarded_port_never_reaches_auth(caddy_stack: Stack) -> None:
    """forward_auth passes a client's X-Forwarded-Port on; at port 443 (no port in X-Forwarded-Host) it
    would choose the port of the DPoP htu. The Caddyfile deletes it."""
    resp = caddy_stack.call("GET", "/resource", [AUTHZ, PROOF, ("X-Forwarded-Port", "8443")])
    assert resp.status == 200
    assert harness.header_values(caddy_stack.last_auth(), "X-Forwarded-Port") == []


# ------------------------------------------------------------------------------------ harness itself


def test_harness_start_process_surfaces_output_on_failure(tmp_path: Path) -> None:
    """A service that dies during start-up is reported with its own stderr, not a bare timeout."""
    cmd = [sys.executable, "-c", "import sys; sys.stderr.write('config error: bad key'); sys.exit(3)"]
    with pytest.raises(harness.ProcessFailed, match="config error: bad key"):
        harness.start_process(cmd, name="dies", log_dir=tmp_path, ready_port=harness.free_port(), timeout=30)


def test_harness_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Children (nginx/gunicorn workers) go down with the leader, even if they ignore SIGTERM."""
    port = harness.free_port()
    child = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    leader = (
        "import socket,subprocess,sys,time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        f"s=socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)\n"
    )
    proc = harness.start_process([sys.executable, "-c", leader], name="group", log_dir=tmp_path, ready_port=port)
    pgid = proc.popen.pid
    proc.stop(timeout=5)
    assert not proc.alive()
    assert harness.live_group_members(pgid) == []


def test_harness_redis_server(redis_server: harness.ManagedProcess) -> None:
    """redis-server starts on its own port with persistence off and answers PING."""
    import redis

    assert redis_server.port is not None
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=10)
    assert client.ping()
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"


@contextmanager
def real_tokenguard_behind_nginx(
    tmp_path: Path,
    tls_material: harness.TLSMaterial,
    echo_upstream: harness.ThreadedServer,
    start_tokenguard: Callable[..., harness.ManagedProcess],
) -> Iterator[tuple[str, harness.ManagedProcess, Path]]:
    """The real service (2 workers, any bearer token route) behind the shipped nginx config: yields the
    nginx base URL, the tokenguard process (its log holds the decision lines) and nginx's prefix."""
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    port = harness.free_port()
    config = tmp_path / "tokenguard.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[token]\naudience = ["https://api.test"]\n'
        '[[issuer]]\nissuer = "http://127.0.0.1:9"\njwks_uri = "http://127.0.0.1:9/jwks"\n'
        '[[route]]\npath = "/*"\nbinding = "any"\n'
    )
    tokenguard = start_tokenguard(config, port, workers=2)
    ports = harness.NginxPorts(
        listen=harness.free_port(),
        verifier=port,
        upstream=echo_upstream.port,
        idp_listen=harness.free_port(),
        idp=echo_upstream.port,
    )
    prefix = tmp_path / "nginx"
    proc = harness.start_nginx(prefix, ports, tls_material)
    try:
        yield f"https://localhost:{ports.listen}", tokenguard, prefix
    finally:
        proc.stop()


def test_nginx_with_real_tokenguard_denies_without_token(
    tmp_path: Path,
    tls_material: harness.TLSMaterial,
    echo_upstream: harness.ThreadedServer,
    start_tokenguard: Callable[..., harness.ManagedProcess],
) -> None:
    """Smoke test of the start_tokenguard fixture: the real service (2 workers) behind the shipped
    nginx config denies a token-less request with its challenge on one line, exactly once."""
    with real_tokenguard_behind_nginx(tmp_path, tls_material, echo_upstream, start_tokenguard) as (base, _, _):
        echo_upstream.requests.clear()
        resp = harness.request("GET", f"{base}/r", ca=tls_material.ca_path)
        assert resp.status == 401
        challenge = resp.one("WWW-Authenticate")
        assert challenge is not None and "Bearer" in challenge and "DPoP" in challenge and "algs=" in challenge
        assert resp.one("X-Auth-Error")
        assert resp.one("Cache-Control") == "no-store"
        assert echo_upstream.requests == []


def test_nginx_request_id_ties_tokenguard_decision_to_nginx_log(
    tmp_path: Path,
    tls_material: harness.TLSMaterial,
    echo_upstream: harness.ThreadedServer,
    start_tokenguard: Callable[..., harness.ManagedProcess],
) -> None:
    """The shipped config sends nginx's $request_id as X-Request-Id: tokenguard's decision line and
    nginx's access-log line name the same request, and a client's own X-Request-Id (passed through
    before) is never the id tokenguard logs."""
    with real_tokenguard_behind_nginx(tmp_path, tls_material, echo_upstream, start_tokenguard) as (base, tg, prefix):
        decisions = harness.DecisionLog(tg.log_path)
        resp = harness.request("GET", f"{base}/r", headers=[("X-Request-Id", "client-chosen-id")],
                               ca=tls_material.ca_path)
        assert resp.status == 401
        (decision,) = decisions.new(expect=True)
        request_id = decision["request_id"]
        assert isinstance(request_id, str) and re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
        access_log = prefix / "logs" / "access.log"
        wait_for(lambda: f"rid={request_id} " in access_log.read_text(), "nginx's access-log line with that id")
        (line,) = [line for line in access_log.read_text().splitlines() if '"GET /r HTTP' in line]
        assert f"rid={request_id} " in line and " 401 " in line
