"""Every CLI verb end to end against a running idp_mock and tokenguard (real processes, free ports).

Also runs ``scripts/demo.py`` (what ``make run`` shows) against the same pair, without nginx.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import settle_replay_store

from .independent import ath, verify_proof

REPO = Path(__file__).resolve().parents[2]
AUDIENCE = "https://api.test"

pytestmark = [pytest.mark.filterwarnings("ignore:EdDSA is deprecated")]

TOKENGUARD_TOML = """\
[server]
listen = "127.0.0.1:{port}"
mode = "auth_request"

[token]
audience = "{audience}"

[[issuer]]
issuer = "{issuer}"

[replay]
store = "memory"

[[route]]
path = "/*"
binding = "any"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    for name in ("TOKENGUARD_TOKEN", "TOKENGUARD_CLIENT_SECRET"):
        env.pop(name, None)
    return env


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback test URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class Stack:
    issuer: str
    verifier: str
    config: Path
    state: Path
    tmp: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    idp_port, tg_port = _free_port(), _free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    config = tmp / "tokenguard.toml"
    config.write_text(TOKENGUARD_TOML.format(port=tg_port, audience=AUDIENCE, issuer=issuer))
    processes: list[subprocess.Popen[bytes]] = []
    settle_replay_store(tmp / "idp-state")  # not about the reset guard (test_replay_faults is)
    try:
        for name, argv, ready in (
            ("idp", ["-m", "idp_mock", "serve", "--port", str(idp_port), "--issuer", issuer,
                     "--state-dir", str(tmp / "idp-state")], f"{issuer}/.well-known/oauth-authorization-server"),
            ("tokenguard", ["-m", "tokenguard", "serve", "--config", str(config), "--workers", "1"],
             f"http://127.0.0.1:{tg_port}/healthz"),
        ):
            log = tmp / f"{name}.log"
            with open(log, "wb") as handle:
                process = subprocess.Popen([sys.executable, *argv], stdout=handle, stderr=subprocess.STDOUT,
                                           cwd=REPO, env=_env(), start_new_session=True)
            processes.append(process)
            _wait(ready, process, log)
        yield Stack(issuer, f"http://127.0.0.1:{tg_port}", config, tmp / "idp-state", tmp)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def tg(*argv: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line: ``python -m tokenguard ...``."""
    return subprocess.run([sys.executable, "-m", "tokenguard", *argv], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env={**_env(), **(env or {})}, timeout=120)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture(scope="module")
def session(stack: Stack) -> dict[str, object]:
    """keygen -> thumbprint -> token: a DPoP-bound token from idp_mock for a new key."""
    key = stack.tmp / "key.jwk"
    keygen = tg("keygen", "--alg", "ES256", "--out", str(key))
    assert keygen.returncode == 0, keygen.stderr
    jkt = keygen.stdout.strip()
    secret = stack.tmp / "secret.txt"
    secret.write_text("dpop1-secret\n")
    token = tg("token", "--issuer", stack.issuer, "--client-id", "dpop1", "--client-secret-file", str(secret),
               "--dpop-key", str(key), "--resource", AUDIENCE, "--scope", "read")
    assert token.returncode == 0, token.stderr
    token_file = stack.tmp / "token.json"
    token_file.write_text(token.stdout)
    return {"key": key, "jkt": jkt, "token_file": token_file, "response": json.loads(token.stdout)}


def test_keygen_and_thumbprint_agree(session: dict[str, object]) -> None:
    result = tg("thumbprint", "--jwk", str(session["key"]))
    assert result.returncode == 0 and result.stdout.strip() == session["jkt"]


def test_token_is_dpop_bound_to_the_key(session: dict[str, object]) -> None:
    from tokenguard.client.tokens import token_cnf

    response = session["response"]
    assert isinstance(response, dict) and response["token_type"] == "DPoP"
    assert token_cnf(response["access_token"]) == {"jkt": session["jkt"]}


def test_token_with_secret_from_env_and_wrong_secret(stack: Stack) -> None:
    ok = tg("token", "--issuer", stack.issuer, "--client-id", "conf1", env={"TOKENGUARD_CLIENT_SECRET": "conf1-secret"})
    assert ok.returncode == 0 and json.loads(ok.stdout)["token_type"] == "Bearer"
    bad = tg("token", "--issuer", stack.issuer, "--client-id", "conf1", "--client-secret", "nope")
    assert bad.returncode == 1 and "invalid_client" in bad.stderr
    _one_line_error(bad)


def test_call_through_auth_endpoint_allowed(stack: Stack, session: dict[str, object]) -> None:
    result = tg("call", "GET", f"{AUDIENCE}/orders?page=1", "--key", str(session["key"]),
                "--token", f"@{session['token_file']}", "--auth-request", f"{stack.verifier}/auth", "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("HTTP 200")
    shown = result.stdout.lower()  # header names are case-insensitive (RFC 9110 §5.1); the ASGI engine sends lower case
    assert "x-auth-binding: dpop" in shown and f"x-auth-jkt: {session['jkt']}".lower() in shown
    assert '"htu": "https://api.test/orders"' in result.stderr
    token = session["response"]["access_token"]  # type: ignore[index]
    assert token not in result.stderr


def test_call_downgrade_and_wrong_key_refused(stack: Stack, session: dict[str, object]) -> None:
    base = ["call", "GET", f"{AUDIENCE}/orders", "--token", f"@{session['token_file']}",
            "--auth-request", f"{stack.verifier}/auth"]
    downgrade = tg(*base, "--bearer")
    assert downgrade.returncode == 1 and downgrade.stdout.startswith("HTTP 401")
    other = stack.tmp / "other.jwk"
    assert tg("keygen", "--alg", "EdDSA", "--out", str(other)).returncode == 0
    wrong = tg(*base, "--key", str(other))
    assert wrong.returncode == 1 and "x-auth-error:" in wrong.stdout.lower()
    assert "warning: the token is bound to jkt" in wrong.stderr


def test_proof_from_cli_accepted_by_tokenguard_once(stack: Stack, session: dict[str, object]) -> None:
    import requests

    from tokenguard.client.http import auth_request_headers

    token = session["response"]["access_token"]  # type: ignore[index]
    proof = tg("proof", "--key", str(session["key"]), "--method", "GET", "--url", f"{AUDIENCE}/x",
               "--token", "-", stdin=token)
    assert proof.returncode == 0, proof.stderr
    claims = verify_proof(proof.stdout.strip())[1]
    assert claims["ath"] == ath(token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof.stdout.strip(),
               **auth_request_headers("GET", f"{AUDIENCE}/x")}
    first = requests.get(f"{stack.verifier}/auth", headers=headers, timeout=10)
    assert first.status_code == 200, first.headers
    again = requests.get(f"{stack.verifier}/auth", headers=headers, timeout=10)
    assert again.status_code == 401 and again.headers["X-Auth-Error"] == "dpop_replay"


def test_thumbprint_of_idp_demo_certificate(stack: Stack) -> None:
    certs = sorted(stack.state.rglob("*.crt")) + sorted(stack.state.rglob("*.pem"))
    if not certs:
        pytest.skip("idp_mock wrote no demo certificate")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from .independent import b64e

    cert = next(c for c in certs if b"BEGIN CERTIFICATE" in c.read_bytes())
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    result = tg("thumbprint", "--cert", str(cert))
    import hashlib

    assert result.returncode == 0 and result.stdout.strip() == b64e(hashlib.sha256(der).digest())


def test_check_config(stack: Stack) -> None:
    ok = tg("check-config", str(stack.config))
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{stack.config}: ok")
    bad = stack.tmp / "bad.toml"
    bad.write_text(stack.config.read_text() + '\n[server2]\nfoo = 1\n')
    result = tg("check-config", str(bad))
    assert result.returncode == 1 and str(bad) in result.stderr
    _one_line_error(result)
    missing = tg("check-config", str(stack.tmp / "missing.toml"))
    assert missing.returncode == 2
    _one_line_error(missing)


def test_serve_and_conformance_are_delegated() -> None:
    for verb, option in (("serve", "--config"), ("conformance", "--verifier")):
        result = tg(verb, "--help")
        assert result.returncode == 0 and option in result.stdout, (verb, result.stdout, result.stderr)


def test_demo_script(stack: Stack) -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--idp", stack.issuer,
                             "--verifier", stack.verifier, "--audience", AUDIENCE,
                             "--proxy", "https://127.0.0.1:9", "--workdir", str(stack.tmp / "demo")],
                            capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "directly (nothing answers at https://127.0.0.1:9)" in out
    assert "OK  allowed" in out
    assert "X-Auth-Error: dpop_replay" in out and "refused" in out
    assert "UNEXPECTED" not in out
