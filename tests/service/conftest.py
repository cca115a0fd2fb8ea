"""Service fixtures: a real app (Flask test client) in front of a stub issuer whose JWKS is in-process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jwk, jwt

from tokenguard.core.metadata import FetchError
from tokenguard.settings import parse_config
from tokenguard.settings.wiring import build_service
from tokenguard.web.app import create_app

ISS, AUD = "https://as.test", "https://api.test"


class Issuer:
    def __init__(self) -> None:
        self.key = jwk.generate_key("RSA", 2048, parameters={"kid": "as-1"}, private=True)
        self.fetches = 0
        self.down = False  # True: the issuer does not answer

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise FetchError("connection refused")
        return {"keys": [self.key.as_dict(private=False)]}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISS, "aud": AUD, "sub": "u1", "client_id": "c1", "iat": now, "exp": now + 600,
                "jti": f"j{time.time_ns()}", "scope": "read"}
        body.update(claims)
        return jwt.encode({"typ": "at+jwt", "alg": "RS256", "kid": "as-1"}, body, self.key)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def make_client(issuer: Issuer, tmp_path: Any) -> Callable[..., Any]:
    """A test client for a config document (the stub issuer's JWKS is wired in-process)."""

    def make(document: dict[str, Any] | None = None) -> Any:
        doc: dict[str, Any] = {"server": {"state_dir": str(tmp_path), "log_decisions": False},
                               "token": {"audience": AUD},
                               "issuer": [{"issuer": ISS, "jwks_uri": "https://as.test/jwks"}],
                               "replay": {"store": "memory"}}
        for key, value in (document or {}).items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        config = parse_config(doc, "test.toml", env={})
        service = build_service(config, fetch=issuer.fetch)  # the key source is injected, never the network
        return create_app(service, log_level=config.server.log_level).test_client()

    return make
