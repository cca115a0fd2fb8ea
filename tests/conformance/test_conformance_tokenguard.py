"""The suite against tokenguard's own app in-process, configured by `tokenguard conformance init`.

The config is printed by the real ``init`` command, parsed by tokenguard's own loader (so it is
valid), and the app built from it must pass every case: 0 failures at any level. The same config
behind real gunicorn and nginx: tests/integration/test_conformance_nginx.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import settle_replay_store

from tokenguard.conformance.runner import main

from .conftest import free_port, run_suite


def init_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Path:
    """Run `tokenguard conformance init ARGV` and keep what it printed."""
    assert main(["init", *argv]) == 0
    path = tmp_path / "tokenguard.toml"
    path.write_text(capsys.readouterr().out)
    return path


def test_init_prints_a_config_the_project_loader_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tokenguard.settings import load_config

    path = init_config(tmp_path, capsys, "--issuer", "https://issuer.example:9443", "--audience", "https://rs.example",
                       "--algs", "ES256 EdDSA", "--iat-window", "30:5", "--listen", "127.0.0.1:18080")
    config = load_config(path, env={})
    assert [i.issuer for i in config.issuers] == ["https://issuer.example:9443"]
    assert config.token.audience == ("https://rs.example",)
    assert config.dpop.algs == ("ES256", "EdDSA") and (config.dpop.iat_past, config.dpop.iat_future) == (30, 5)
    assert config.server.listen == "127.0.0.1:18080" and config.server.mode == "auth_request"
    assert [(r.path, r.methods, r.scopes, r.dpop_nonce) for r in config.policy.routes] == [
        ("/resource", ("GET",), ("read",), False), ("/write", ("POST",), ("write",), False),
        ("/nonce", (), (), True)]
    text = path.read_text()
    assert "--algs \"ES256 EdDSA\"" in text and "--iat-window 30:5" in text  # the matching suite command


def test_init_never_echoes_an_operators_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from tokenguard.conformance.setup_config import Fixture

    assert "s3cr3t-value" not in Fixture(client_secret="s3cr3t-value").issuer_toml()
    assert main(["init"]) == 0
    assert 'introspection_client_secret = "conformance-secret"' in capsys.readouterr().out


def test_suite_against_tokenguard_configured_by_init(serve: Callable[[Any], str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tokenguard.settings import load_config
    from tokenguard.settings.wiring import build_service
    from tokenguard.web.app import create_app

    issuer = f"http://127.0.0.1:{free_port()}"
    path = init_config(tmp_path, capsys, "--issuer", issuer)
    config = load_config(path, env={"TOKENGUARD_SERVER_STATE_DIR": str(tmp_path / "state")})
    settle_replay_store(config.state_dir)  # not about the reset guard (tests/core/test_replay_epoch.py is)
    base = serve(create_app(build_service(config)))
    results = run_suite("--verifier", f"{base}/auth", "--issuer", issuer, "--nonce-resource", "https://api.test/nonce")
    failures = [(r.id, r.level, r.got, r.reason) for r in results if r.outcome == "fail"]
    assert failures == [], "\n".join(map(str, failures))
    skipped = {r.id for r in results if r.outcome == "skip"}
    assert skipped <= {"MTLS-RS-10", "NONCE-RS-04"}, skipped  # direct mode only; needs an AS
