"""The shipped nginx.conf logs the auth sub-request's reason code (issue 13 §4.5).

Its access log used ``$upstream_http_x_auth_error``, the protected app's header, so every denial was
logged ``auth=-``; it now logs the variable ``auth_request_set`` fills from tokenguard's answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import harness
import pytest
from support import wait_for

pytestmark = pytest.mark.integration


class Verdict(BaseHTTPRequestHandler):
    """A stand-in /auth: 401 dpop_replay without ``X-Test-Allow``, else 200 for subject alice."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        allow = self.headers.get("X-Test-Allow") is not None
        self.send_response(200 if allow else 401)
        if allow:
            self.send_header("X-Auth-Subject", "alice")
            self.send_header("X-Auth-Binding", "dpop")
        else:
            self.send_header("WWW-Authenticate", 'DPoP error="invalid_dpop_proof", algs="ES256"')
            self.send_header("X-Auth-Error", "dpop_replay")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def nginx_prefix(nginx_binary: str, tmp_path: Path, tls_material: harness.TLSMaterial,
                 echo_upstream: harness.ThreadedServer) -> Iterator[Path]:
    auth = harness.serve_in_thread(Verdict)
    ports = harness.NginxPorts(listen=harness.free_port(), verifier=auth.port, upstream=echo_upstream.port,
                               idp_listen=harness.free_port(), idp=harness.free_port())
    prefix = tmp_path / "nginx"
    proc = harness.start_nginx(prefix, ports, tls_material)
    try:
        yield prefix
    finally:
        proc.stop()
        auth.close()


def _port(prefix: Path) -> int:
    text = (prefix / "conf" / "tokenguard.conf").read_text()
    return int(text.split("listen 127.0.0.1:", 1)[1].split(" ", 1)[0])


def test_the_access_log_carries_the_reason_code_of_a_denial(nginx_prefix: Path,
                                                            tls_material: harness.TLSMaterial) -> None:
    base = f"https://localhost:{_port(nginx_prefix)}"
    denied = harness.request("GET", f"{base}/api/x", headers=[("Authorization", "DPoP t")], ca=tls_material.ca_path)
    allowed = harness.request("GET", f"{base}/api/y", headers=[("Authorization", "DPoP t"), ("X-Test-Allow", "1")],
                              ca=tls_material.ca_path)
    assert (denied.status, allowed.status) == (401, 200)
    log = nginx_prefix / "logs" / "access.log"
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2, "two access log lines")
    lines = log.read_text().splitlines()
    assert '"GET /api/x HTTP/1.1" 401 auth=dpop_replay sub= ' in lines[0]
    assert '"GET /api/y HTTP/1.1" 200 auth= sub=alice ' in lines[1]
