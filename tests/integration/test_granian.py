"""`server.engine = "granian"`: the optional faster serving layer runs the same app, just as strictly."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import pytest

from tokenguard.core.dpop import create_proof

pytestmark = pytest.mark.integration

PUBLIC = "https://api.example"
ROUTES = """
[[route]]
path = "/dpop*"
binding = "dpop"
"""


@pytest.fixture
def issuer() -> Iterator[harness.StubIssuer]:
    stub = harness.StubIssuer()
    yield stub
    stub.close()


def test_granian_engine_verifies_and_refuses_replay_across_workers(
        tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: Callable[..., harness.ManagedProcess]) -> None:
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES)
    start_tokenguard(config, port, env={"TOKENGUARD_SERVER_ENGINE": "granian"})
    key = harness.dpop_key()
    token = issuer.token(cnf={"jkt": str(key["jkt"])})
    proof = create_proof(key["jwk"], htm="GET", htu=f"{PUBLIC}/dpop", access_token=token)  # type: ignore[arg-type]
    headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
    first = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", headers)
    assert first.status == 200, first.one("X-Auth-Error")
    assert first.one("X-Auth-Jkt") == key["jkt"]
    # The embedded store is shared by granian's worker processes: every replay is refused.
    for _ in range(20):
        again = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", headers)
        assert again.status == 401 and again.one("X-Auth-Error") == "dpop_replay"
    bearer = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", [("Authorization", f"Bearer {token}")])
    assert bearer.status == 401 and bearer.one("X-Auth-Error") == "dpop_token_as_bearer"
    metrics = harness.request("GET", f"http://127.0.0.1:{port}/metrics")
    assert metrics.status == 200 and b"tokenguard_decisions_total" in metrics.body


def test_granian_engine_refuses_memory_store_with_two_workers(tmp_path: Path, issuer: harness.StubIssuer) -> None:
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, store="memory", routes=ROUTES)
    result = subprocess.run([*harness.tokenguard_command(config, 2)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TOKENGUARD_SERVER_ENGINE": "granian"})
    assert result.returncode != 0
    assert "memory" in result.stderr and "worker" in result.stderr
