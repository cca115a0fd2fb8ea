"""The request-integrity guarantees on every serving engine (issue 9 items 2, 3, 4 and 7).

Each test runs ``tokenguard serve`` for real on every engine in :data:`tokenguard.serving.ENGINES` (a new
engine joins by being registered) and talks to it as a proxy would, or through the shipped nginx config:

* header names exactly as sent: an underscore spelling never stands in for a trusted field;
* no process environment in requests: variables named like request data change nothing;
* no server-level trust of forwarded headers: the scheme of an untrusted peer's request is its own;
* tokenguard's own limits, not the server's: oversized inputs get tokenguard's 401, never a 431/400;
* ``listen = "unix:PATH"``: the socket's peer is the proxy, and the socket is not world-connectable.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import pytest
from support import wait_for

from tokenguard.core.dpop import create_proof
from tokenguard.serving import ENGINES

pytestmark = pytest.mark.integration

ENGINE_NAMES = sorted(ENGINES)
ROUTES = harness.INTEGRITY_ROUTES
CADDY_CERT = '[mtls]\ncert_header = "X-Forwarded-Tls-Client-Cert"\ncert_format = "base64-der"\n'
PUBLIC = "https://api.test"


@dataclass
class Service:
    port: int
    process: harness.ManagedProcess
    issuer: harness.StubIssuer

    def auth(self, method: str, url: str, headers: list[tuple[str, str]]) -> harness.Response:
        return harness.auth_subrequest(self.port, method, url, headers)

    def caddy_style(self, uri: str, headers: list[tuple[str, str]]) -> harness.Response:
        """As Caddy's forward_auth asks: X-Forwarded-Method/-Uri/-Proto/-Host, the host carrying the port."""
        forwarded = [("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", uri), ("X-Forwarded-Proto", "https"),
                     ("X-Forwarded-Host", "api.test")]
        return harness.request("GET", f"http://127.0.0.1:{self.port}/auth", headers=[*forwarded, *headers])


@pytest.fixture(scope="module")
def issuer() -> Iterator[harness.StubIssuer]:
    stub = harness.StubIssuer()
    yield stub
    stub.close()


def _start(tmp: Path, issuer: harness.StubIssuer, engine: str, *, extra: str = "",
           env: dict[str, str] | None = None) -> Service:
    port = harness.free_port()
    config = harness.tokenguard_config(tmp / "tg.toml", port=port, state_dir=tmp / "state", issuer=issuer.issuer,
                                       extra=extra, routes=ROUTES)
    process = harness.start_tokenguard(config, port, tmp / "logs",
                                       env={"TOKENGUARD_SERVER_ENGINE": engine, **(env or {})})
    return Service(port, process, issuer)


@pytest.fixture(scope="module", params=ENGINE_NAMES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            issuer: harness.StubIssuer, tls_material: harness.TLSMaterial) -> Iterator[Service]:
    """tokenguard on one engine, with process environment variables named like request data."""
    other = base64.b64encode(tls_material.cert2.der).decode()
    env = {"HTTP_X_ORIGINAL_URI": "/any/x", "RAW_URI": "/any/x", "REQUEST_URI": "/any/x",
           "HTTP_X_FORWARDED_TLS_CLIENT_CERT": other, "HTTP_AUTHORIZATION": f"Bearer {issuer.token()}"}
    started = _start(tmp_path_factory.mktemp(f"engine-{request.param}"), issuer, request.param, extra=CADDY_CERT,
                     env=env)
    yield started
    started.process.stop()


# ------------------------------------------------------------------------------- names and environment


def test_an_underscore_name_never_stands_in_for_a_trusted_field(service: Service,
                                                                tls_material: harness.TLSMaterial) -> None:
    """Issue 9 item 2 (granian's WSGI mode): a stolen certificate-bound token plus the victim's certificate
    in ``X_Forwarded_Tls_Client_Cert`` got 200; so did a bearer token plus ``X_Original_URI: /any/x`` on
    ``GET /mtls/secret``."""
    stolen = service.issuer.token(cnf={"x5t#S256": tls_material.cert1.x5t_s256})
    victim = base64.b64encode(tls_material.cert1.der).decode()
    forged = service.caddy_style("/mtls/secret", [("Authorization", f"Bearer {stolen}"),
                                                  ("X_Forwarded_Tls_Client_Cert", victim)])
    assert forged.status == 401, forged.headers
    assert forged.one("X-Auth-Error") in ("underscore_header", "cert_missing")
    bearer = service.caddy_style("/mtls/secret", [("Authorization", f"Bearer {service.issuer.token()}"),
                                                  ("X_Original_URI", "/any/x")])
    assert bearer.status == 401 and bearer.one("X-Auth-Error") in ("underscore_header", "binding_required")
    # the hyphenated spelling, from the trusted proxy, is the real certificate header
    real = service.caddy_style("/mtls/secret", [("Authorization", f"Bearer {stolen}"),
                                                ("X-Forwarded-Tls-Client-Cert", victim)])
    assert real.status == 200 and real.one("X-Auth-X5t-S256") == tls_material.cert1.x5t_s256


def test_process_environment_never_changes_a_request(service: Service, tls_material: harness.TLSMaterial) -> None:
    """The service runs with HTTP_X_ORIGINAL_URI=/any/x, RAW_URI, REQUEST_URI, a certificate and a token
    in its environment: none of them may show up as part of a request."""
    no_cert = service.caddy_style("/mtls/secret", [("Authorization", f"Bearer {service.issuer.token()}")])
    assert no_cert.status == 401 and no_cert.one("X-Auth-Error") == "binding_required"
    nothing = service.caddy_style("/x", [])
    assert nothing.status == 401 and nothing.one("X-Auth-Error") == "no_credentials"
    stolen = service.issuer.token(cnf={"x5t#S256": tls_material.cert2.x5t_s256})  # the environment's certificate
    mtls = service.caddy_style("/mtls/x", [("Authorization", f"Bearer {stolen}")])
    assert mtls.status == 401 and mtls.one("X-Auth-Error") == "cert_missing"


# ---------------------------------------------------------------------------------------------- limits


def test_tokenguards_limits_apply_not_the_servers(service: Service) -> None:
    """Issue 9 item 4: gunicorn answered these with 431/400 before tokenguard ran (nginx: 500)."""
    issuer = service.issuer
    big = issuer.token(pad="p" * 11000)
    assert 10_000 < len(big) <= 16384
    ok = service.auth("GET", f"{PUBLIC}/x", [("Authorization", f"Bearer {big}")])
    assert ok.status == 200, ok.headers
    huge = service.auth("GET", f"{PUBLIC}/x", [("Authorization", f"Bearer {issuer.token(pad='p' * 13000)}")])
    assert huge.status == 401 and huge.one("X-Auth-Error") == "token_too_large"
    assert 'error="invalid_token"' in (huge.one("WWW-Authenticate") or "")

    key = harness.dpop_key()
    token = issuer.token(cnf={"jkt": str(key["jkt"])})

    def proof(**claims: object) -> str:
        return create_proof(key["jwk"], htm="GET", htu=f"{PUBLIC}/dpop/x", access_token=token,  # type: ignore[arg-type]
                            extra_claims=claims or None)

    large = proof(pad="x" * 5750)
    assert 8192 < len(large) < 8400
    over = service.auth("GET", f"{PUBLIC}/dpop/x", [("Authorization", f"DPoP {token}"), ("DPoP", large)])
    assert over.status == 401 and over.one("X-Auth-Error") == "dpop_too_large"
    assert 'error="invalid_dpop_proof"' in (over.one("WWW-Authenticate") or "")
    many = service.auth("GET", f"{PUBLIC}/dpop/x", [("Authorization", f"DPoP {token}"),
                                                     *[("DPoP", proof()) for _ in range(99)]])
    assert many.status == 401 and many.one("X-Auth-Error") == "dpop_multiple_proofs"

    bearer = ("Authorization", f"Bearer {issuer.token()}")
    cookie = ("Cookie", "c=" + "v" * 30000)
    assert service.auth("GET", f"{PUBLIC}/x", [cookie, bearer]).status == 200
    cookies = service.auth("GET", f"{PUBLIC}/x", [cookie, cookie, cookie, bearer])
    assert cookies.status == 401 and cookies.one("X-Auth-Error") == "headers_too_large"
    fields = service.auth("GET", f"{PUBLIC}/x", [*[(f"X-Pad-{n}", "1") for n in range(150)], bearer])
    assert fields.status == 200, fields.headers
    too_many = service.auth("GET", f"{PUBLIC}/x", [*[(f"X-Pad-{n}", "1") for n in range(300)], bearer])
    assert too_many.status == 401 and too_many.one("X-Auth-Error") == "too_many_header_fields"
    # Caddy keeps the original query on its /auth sub-request: a long request line is tokenguard's to judge
    long_line = harness.request("GET", f"http://127.0.0.1:{service.port}/auth?q={'a' * 9000}", headers=[
        ("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", f"/x?q={'a' * 9000}"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.test"), bearer])
    assert long_line.status == 401 and long_line.one("X-Auth-Error") == "request_uri_too_large"


# ----------------------------------------------------------------------------------------------- scheme


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_scheme_of_an_untrusted_peer_is_its_own(tmp_path: Path, issuer: harness.StubIssuer,
                                                    engine: str) -> None:
    """Issue 9 item 3: gunicorn's own forwarded_allow_ips let 127.0.0.1 set https with X-Forwarded-Proto or
    X-Forwarded-Ssl even where tokenguard's trusted_proxies did not include it."""
    service = _start(tmp_path, issuer, engine, env={"TOKENGUARD_SERVER_TRUSTED_PROXIES": "192.0.2.0/24"})
    try:
        key = harness.dpop_key()
        token = issuer.token(cnf={"jkt": str(key["jkt"])})
        base = f"127.0.0.1:{service.port}/auth"

        def call(scheme: str, spoof: list[tuple[str, str]]) -> harness.Response:
            proof = create_proof(key["jwk"], htm="GET", htu=f"{scheme}://{base}", access_token=token)  # type: ignore[arg-type]
            return harness.request("GET", f"http://{base}", headers=[("Authorization", f"DPoP {token}"),
                                                                     ("DPoP", proof), *spoof])

        for spoof in ([("X-Forwarded-Proto", "https")], [("X-Forwarded-Ssl", "on")],
                      [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on"), ("X-Forwarded-Scheme", "https")]):
            https = call("https", spoof)
            assert https.status == 401 and https.one("X-Auth-Error") == "dpop_htu_mismatch", spoof
        assert call("http", [("X-Forwarded-Proto", "https")]).status == 200  # judged as it arrived: http
    finally:
        service.process.stop()


# ------------------------------------------------------------------------------------------- unix: listen


def _unix_get(path: Path, target: str) -> harness.Response:
    return harness.raw_request(0, f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
                               unix_socket=path)


def _unix_ready(sock: Path) -> bool:
    """The socket answers /healthz (it may exist a moment before its server listens on it)."""
    try:
        return _unix_get(sock, "/healthz").status == 200
    except OSError:
        return False


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_unix_socket_listen_behind_the_shipped_nginx(tmp_path: Path, issuer: harness.StubIssuer, engine: str,
                                                     tls_material: harness.TLSMaterial,
                                                     nginx_binary: str) -> None:
    """Issue 9 item 7: with listen = "unix:PATH" every forwarded header was ignored (the socket peer has no
    address in trusted_proxies), so every DPoP call failed with a wrong htu."""
    sock = tmp_path / "run" / "tokenguard.sock"
    sock.parent.mkdir()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=0, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES)
    config.write_text(config.read_text().replace('listen = "127.0.0.1:0"', f'listen = "unix:{sock}"'))
    check = subprocess.run([sys.executable, "-m", "tokenguard", "check-config", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    harness.settle_replay_store(config=config, env={"TOKENGUARD_SERVER_ENGINE": engine})
    process = harness.start_process(
        harness.tokenguard_command(config), name="tokenguard-unix", log_dir=tmp_path / "logs", cwd=harness.REPO,
        env={"TOKENGUARD_SERVER_ENGINE": engine},
        ready_check=lambda: sock.exists() and _unix_ready(sock))
    upstream = harness.serve_in_thread(harness.EchoHandler)
    try:
        ports = harness.NginxPorts(harness.free_port(), f"unix:{sock}", upstream.port, harness.free_port(),
                                   upstream.port)
        nginx = harness.start_nginx(tmp_path / "nginx", ports, tls_material)
        try:
            key = harness.dpop_key()
            token = issuer.token(cnf={"jkt": str(key["jkt"])})
            url = f"https://localhost:{ports.listen}/dpop/x"
            proof = create_proof(key["jwk"], htm="GET", htu=url, access_token=token)  # type: ignore[arg-type]
            resp = harness.request("GET", url, headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof)],
                                   ca=tls_material.ca_path)
            assert resp.status == 200, (resp.status, resp.headers, process.log_tail())
            wait_for(lambda: len(upstream.requests) == 1, "the upstream to get the allowed request")
            assert harness.header_values(upstream.requests[0], "X-Auth-Jkt") == [key["jkt"]]
        finally:
            nginx.stop()
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        assert mode & 0o007 == 0, f"socket mode {oct(mode)}: any local user could connect and be trusted"
    finally:
        upstream.close()
        process.stop()


def test_dev_server_refuses_a_unix_socket(tmp_path: Path, issuer: harness.StubIssuer) -> None:
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=harness.free_port(), state_dir=tmp_path / "s",
                                       issuer=issuer.issuer, store="memory")
    result = subprocess.run([*harness.tokenguard_command(config, 1), "--dev", "--listen", f"unix:{tmp_path}/s.sock"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "UNIX socket" in result.stderr
