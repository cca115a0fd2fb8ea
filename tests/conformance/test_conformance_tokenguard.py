"""The suite against tokenguard's own app in-process (auth_request mode; the lead adds nginx)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import free_port, run_suite


def spec_config(issuer: str, state_dir: str) -> dict[str, Any]:
    """Spec §0.1 fixture configuration, pointed at the suite's own issuer."""
    return {
        "server": {"mode": "auth_request", "realm": "tokenguard"},
        "token": {"audience": "https://api.test", "leeway": 60},
        "issuer": [{"issuer": issuer, "introspection_client_id": "conformance",
                    "introspection_client_secret": "conformance-secret"}],
        "dpop": {"algs": ["ES256", "PS256", "EdDSA"], "iat_past": 60, "iat_future": 15},
        "replay": {"store": "memory"},
        "route": [
            {"path": "/resource", "methods": ["GET"], "scopes": ["read"], "binding": "any"},
            {"path": "/write", "methods": ["POST"], "scopes": ["write"], "binding": "any"},
            {"path": "/nonce", "binding": "any", "dpop_nonce": True},
        ],
    }


def test_suite_against_tokenguard_app(serve: Callable[[Any], str], tmp_path: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenguard.settings import parse_config
    from tokenguard.settings.wiring import build_service
    from tokenguard.web.app import create_app

    monkeypatch.setenv("TOKENGUARD_SERVER_STATE_DIR", str(tmp_path))
    issuer = f"http://127.0.0.1:{free_port()}"
    config = parse_config(spec_config(issuer, str(tmp_path)), env={})
    base = serve(create_app(build_service(config)))
    results = run_suite("--verifier", f"{base}/auth", "--issuer", issuer,
                        "--nonce-resource", "https://api.test/nonce")
    failures = [(r.id, r.level, r.got, r.reason) for r in results
                if r.outcome == "fail" and r.level in ("M", "S")]
    assert failures == [], "\n".join(map(str, failures))
