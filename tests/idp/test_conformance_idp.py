"""The conformance suite's §2 (authorization-server) cases against a real `idp-mock serve` process.

idp-mock runs under gunicorn on a free port with a fresh state dir; its RFC 8705
`mtls_endpoint_aliases` point at the SHIPPED `deploy/nginx/idp-mtls.conf`, rendered and run by the
integration harness, so tls_client_auth / self_signed_tls_client_auth / certificate-bound cases present
real client certificates in TLS to nginx, which forwards them as X-SSL-Client-Cert. Clients are the
demo clients from idp_mock/README.md. Two runs: AS nonces off and on (`dpop_nonce = true`).
Every MUST and SHOULD case must pass; per-section counts and the JUnit path are printed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import harness  # noqa: E402

from tokenguard.conformance import report  # noqa: E402
from tokenguard.conformance.model import Result  # noqa: E402
from tokenguard.conformance.runner import collect, parser  # noqa: E402

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:8765/callback"


def start_idp(tmp: Path, *, port: int, mtls_port: int, nonce: bool, issuer: str) -> harness.ManagedProcess:
    config = tmp / "idp.toml"
    config.write_text(f"mtls_base = {json.dumps(f'https://localhost:{mtls_port}')}\n"
                      f"dpop_nonce = {'true' if nonce else 'false'}\n")
    harness.settle_replay_store(tmp / "state")  # not about the reset guard (test_replay_faults is)
    return harness.start_process(
        [sys.executable, "-m", "idp_mock", "serve", "--config", str(config), "--port", str(port),
         "--issuer", issuer, "--state-dir", str(tmp / "state")],
        name=f"idp-mock-{port}", log_dir=tmp / "logs", ready_url=f"{issuer}/healthz", cwd=harness.REPO,
    )


def test_conformance_against_idp_mock(tmp_path: Path, nonce: bool, capsys: pytest.CaptureFixture[str]) -> None:
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (needed for the mtls_endpoint_aliases front)")
    tls = harness.make_tls_material(tmp_path / "tls")
    ports = harness.NginxPorts(listen=harness.free_port(), verifier=harness.free_port(),
                               upstream=harness.free_port(), idp_listen=harness.free_port(),
                               idp=harness.free_port())
    procs: list[harness.ManagedProcess] = []
    try:
        # The nonce-on run also uses an issuer with a path (RFC 8414 §3.1 suffix insertion, META-AS-04b).
        path = "/t1" if nonce else ""
        issuer = f"http://127.0.0.1:{ports.idp}{path}"
        procs.append(start_idp(tmp_path, port=ports.idp, mtls_port=ports.idp_listen, nonce=nonce, issuer=issuer))
        procs.append(harness.start_nginx(tmp_path / "nginx", ports, tls))
        demo = tmp_path / "state" / "demo"
        name = f"idp-mock-nonce-{'on' if nonce else 'off'}"
        junit = Path(os.environ.get("TOKENGUARD_CONFORMANCE_JUNIT_DIR") or tmp_path) / f"conformance-{name}.xml"
        junit.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            "--as-metadata", f"http://127.0.0.1:{ports.idp}/.well-known/oauth-authorization-server{path}",
            "--as-client", "confidential:conf1:conf1-secret",
            "--as-client", "dpop-required:dpop1:dpop1-secret",
            "--as-client", "public:pub1",
            "--as-client", "introspect:rs1:rs1-secret",
            "--as-client", "tls:mtls1",
            "--as-client", "self-signed-tls:selfsigned1",
            "--as-client", "cert-bound:mtls1",
            "--as-tls-cert", f"tls={demo / 'mtls1.crt'}", "--as-tls-key", f"tls={demo / 'mtls1.key'}",
            "--as-tls-cert", f"cert-bound={demo / 'mtls1.crt'}",
            "--as-tls-key", f"cert-bound={demo / 'mtls1.key'}",
            "--as-tls-cert", f"self-signed-tls={demo / 'selfsigned1.crt'}",
            "--as-tls-key", f"self-signed-tls={demo / 'selfsigned1.key'}",
            "--as-redirect-uri", REDIRECT, "--as-scope", "read",
            "--ca", str(tls.ca_path), "--timeout", "30", "--junit", str(junit),
            *(["--as-nonce"] if nonce else []),
        ]
        results: list[Result] = collect(parser().parse_args(argv))
    finally:
        for proc in reversed(procs):
            proc.stop()
    junit.write_bytes(report.to_junit(results))
    lines = [f"\n=== conformance: {name} ===", report.section_counts(results), f"JUnit: {junit}"]
    lines += [f"  {r.outcome:4} {r.id:14} {r.level}  {r.got:36.36}  {r.reason}" for r in results if r.outcome != "pass"]
    with capsys.disabled():  # the counts reach the CI log even when the test passes
        print("\n".join(lines))
    bad = [f"{r.id} [{r.level}] expected {r.expected}; got {r.got}: {r.reason}"
           for r in results if r.outcome == "fail"]
    assert not bad, "conformance failures:\n" + "\n".join(bad)
    passed = {r.id for r in results if r.outcome == "pass"}
    # The mTLS cases really ran through nginx's alias (not skipped for want of a client or cert).
    assert {"MTLS-AS-01", "MTLS-AS-03a", "MTLS-AS-05a", "TOK-AS-08a", "INT-AS-02"} <= passed
    if nonce:
        assert {"NONCE-AS-01", "NONCE-AS-02", "NONCE-AS-03", "META-AS-04b"} <= passed


@pytest.fixture(params=[False, True], ids=["as-nonce-off", "as-nonce-on"])
def nonce(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)
