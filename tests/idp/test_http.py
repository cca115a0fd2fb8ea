"""Over real HTTP: ``python -m idp_mock serve`` (gunicorn, two workers) started as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support import free_port, settle_replay_store

from tokenguard.core.dpop import create_proof
from tokenguard.core.jwk import thumbprint

from .conftest import REDIRECT, decode_jwt, escaped_pem, pkce

MTLS = "https://localhost:9443"



@dataclass
class Served:
    base: str
    state: Path


def _start(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Served]:
    port = free_port()
    state = tmp / "state"
    settle_replay_store(state)  # not about the reset guard (tests/integration/test_replay_faults.py is)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("IDP_MOCK_ISSUER", None)
    with open(tmp / f"idp-{port}.log", "wb") as log:  # a file, not a pipe nobody drains
        proc = subprocess.Popen([sys.executable, "-m", "idp_mock", "serve", "--port", str(port),
                                 "--state-dir", str(state), *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp / f"idp-{port}.log").read_text(errors="replace"))
        try:
            if requests.get(base + "/healthz", timeout=0.5).status_code == 200:
                return proc, Served(base, state)
        except requests.ConnectionError:
            time.sleep(0.1)
    _stop(proc)
    raise RuntimeError("idp-mock did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("http")
    config = tmp / "idp.toml"
    config.write_text(f'dpop_nonce = true\nmtls_base = "{MTLS}"\nreplay = "embedded"\n')
    proc, info = _start(tmp, "--config", str(config), "--workers", "2")
    yield info
    _stop(proc)


def _token_with_nonce(base: str, key: dict, data: dict[str, str], url: str | None = None,
                      **kw: object) -> requests.Response:
    url = url or base + "/token"
    first = requests.post(url, data=data, headers={"DPoP": create_proof(key, htm="POST", htu=url)}, **kw)
    assert first.status_code == 400 and first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    headers = {"DPoP": create_proof(key, htm="POST", htu=url, nonce=nonce), **kw.pop("headers", {})}  # type: ignore[dict-item]
    return requests.post(url, data=data, headers=headers, **kw)  # type: ignore[arg-type]


def test_http_metadata_default_issuer_follows_the_port(served: Served) -> None:
    doc = requests.get(served.base + "/.well-known/oauth-authorization-server", timeout=5).json()
    assert doc["issuer"] == served.base
    assert doc["mtls_endpoint_aliases"]["token_endpoint"] == MTLS + "/token"
    assert requests.get(doc["jwks_uri"], timeout=5).json()["keys"]


def test_http_NONCE_AS_01_02_TOK_AS_01_dpop_token(served: Served, k1: dict) -> None:
    response = _token_with_nonce(served.base, k1, {"grant_type": "client_credentials"},
                                 auth=("conf1", "conf1-secret"), timeout=5)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert response.headers["Cache-Control"] == "no-store"
    assert decode_jwt(response.json()["access_token"])[1]["cnf"]["jkt"] == thumbprint(k1)


def test_http_TOK_AS_06_replay_across_workers(served: Served, k1: dict) -> None:
    url = served.base + "/token"
    nonce = requests.post(url, data={"grant_type": "client_credentials"}, auth=("conf1", "conf1-secret"),
                          headers={"DPoP": create_proof(k1, htm="POST", htu=url)}, timeout=5).headers["DPoP-Nonce"]
    proof = create_proof(k1, htm="POST", htu=url, nonce=nonce)
    statuses = []
    for _ in range(4):  # new connections, so both gunicorn workers see the same proof
        with requests.Session() as session:
            statuses.append(session.post(url, data={"grant_type": "client_credentials"},
                                         auth=("conf1", "conf1-secret"), headers={"DPoP": proof}, timeout=5))
    assert [r.status_code for r in statuses] == [200, 400, 400, 400]
    assert all(r.json()["error"] == "invalid_dpop_proof" for r in statuses[1:])


def test_http_TOK_AS_08_mtls_alias_through_the_proxy_headers(served: Served, k1: dict) -> None:
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "localhost", "X-Forwarded-Port": "9443",
             "X-SSL-Client-Cert": escaped_pem((served.state / "demo" / "mtls1.crt").read_bytes())}
    url = served.base + "/token"
    ok = requests.post(url, data={"grant_type": "client_credentials", "client_id": "mtls1"}, headers=proxy, timeout=5)
    assert ok.status_code == 200, ok.text
    assert "x5t#S256" in decode_jwt(ok.json()["access_token"])[1]["cnf"]
    nonce = requests.post(url, data={"grant_type": "client_credentials"}, auth=("conf1", "conf1-secret"),
                          headers={**proxy, "DPoP": create_proof(k1, htm="POST", htu=MTLS + "/token")},
                          timeout=5).headers["DPoP-Nonce"]
    wrong_htu = requests.post(url, data={"grant_type": "client_credentials"}, auth=("conf1", "conf1-secret"),
                              headers={**proxy, "DPoP": create_proof(k1, htm="POST", htu=url, nonce=nonce)},
                              timeout=5)
    assert wrong_htu.status_code == 400 and wrong_htu.json()["error"] == "invalid_dpop_proof"
    right = requests.post(url, data={"grant_type": "client_credentials"}, auth=("conf1", "conf1-secret"),
                          headers={**proxy, "DPoP": create_proof(k1, htm="POST", htu=MTLS + "/token", nonce=nonce)},
                          timeout=5)
    assert right.status_code == 200, right.text


def test_http_code_flow_across_workers_then_introspect(served: Served, k1: dict) -> None:
    verifier, challenge = pkce()
    codes = requests.get(served.base + "/authorize", allow_redirects=False, timeout=5, params={
        "response_type": "code", "client_id": "pub1", "redirect_uri": REDIRECT, "scope": "openid read",
        "code_challenge": challenge, "code_challenge_method": "S256", "dpop_jkt": thumbprint(k1)})
    assert codes.status_code == 302
    code = parse_qs(urlsplit(codes.headers["Location"]).query)["code"][0]
    response = _token_with_nonce(served.base, k1, {"grant_type": "authorization_code", "code": code,
                                                   "code_verifier": verifier, "redirect_uri": REDIRECT,
                                                   "client_id": "pub1"}, timeout=5)
    assert response.status_code == 200, response.text
    info = requests.post(served.base + "/introspect", data={"token": response.json()["access_token"]},
                         auth=("rs1", "rs1-secret"), timeout=5).json()
    assert info["active"] is True and info["token_type"] == "DPoP" and info["cnf"]["jkt"] == thumbprint(k1)
    dead = requests.post(served.base + "/introspect", data={"token": "nope"}, auth=("rs1", "rs1-secret"), timeout=5)
    assert dead.json() == {"active": False}
    assert requests.post(served.base + "/introspect", data={"token": "x"}, timeout=5).status_code == 401


def test_http_dev_server_and_restart_keeps_the_jwks(tmp_path: Path) -> None:
    proc, info = _start(tmp_path, "--dev")
    try:
        jwks = requests.get(info.base + "/jwks", timeout=5).json()
    finally:
        _stop(proc)
    proc, info2 = _start(tmp_path)
    try:
        assert requests.get(info2.base + "/jwks", timeout=5).json() == jwks
    finally:
        _stop(proc)


def test_http_tokenguard_token_cli_gets_a_dpop_token(served: Served, tmp_path: Path, k1: dict) -> None:
    """Issue 4 "done when": ``tokenguard token`` gets a DPoP-bound token in one command (nonce retry
    included; this server runs with ``dpop_nonce = true``)."""
    import json

    key = tmp_path / "k1.jwk"
    key.write_text(json.dumps(k1))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-m", "tokenguard", "token", "--issuer", served.base,
                             "--client-id", "conf1", "--client-secret", "conf1-secret", "--dpop-key", str(key)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["token_type"] == "DPoP"
    assert decode_jwt(body["access_token"])[1]["cnf"]["jkt"] == thumbprint(k1)
