"""Fixtures for the mock IdP: an app per test (fresh state dir), DPoP keys, PKCE, certificates."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp_mock import create_app, load_config
from idp_mock.keys import generate_jwk
from tokenguard.core.dpop import create_proof
from tokenguard.core.jwk import thumbprint

ISS = "https://as.test"
TOKEN_URL = ISS + "/token"
REDIRECT = "http://127.0.0.1:8765/callback"


def b64url_json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return b64url_json(header), b64url_json(payload)


def escaped_pem(pem: bytes | str) -> str:
    """nginx ``$ssl_client_escaped_cert``."""
    return quote(pem if isinstance(pem, str) else pem.decode())


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge




@pytest.fixture(scope="session")
def k1() -> dict[str, Any]:
    return generate_jwk("ES256")


@pytest.fixture(scope="session")
def k2() -> dict[str, Any]:
    return generate_jwk("ES256")


@dataclass
class Idp:
    """A test IdP: the Flask app plus helpers that speak its protocol."""

    app: Flask
    state: Path
    client: FlaskClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.app.test_client()

    @property
    def issuer(self) -> str:
        return str(self.app.extensions["idp_mock"].config.issuer)

    def proof(self, key: dict[str, Any], url: str | None = None, method: str = "POST", **kw: Any) -> str:
        return create_proof(key, htm=method, htu=url or self.issuer + "/token", **kw)

    def post(self, path: str, data: dict[str, str] | None = None, *, base: str | None = None,
             **kw: Any) -> TestResponse:
        return self.client.post(path, base_url=base or self.issuer, data=data or {}, **kw)

    def token(self, data: dict[str, str], *, dpop: str | list[str] | None = None,
              auth: tuple[str, str] | None = None, headers: list[tuple[str, str]] | None = None,
              base: str | None = None, path: str = "/token") -> TestResponse:
        hdrs = list(headers or [])
        if isinstance(dpop, str):
            hdrs.append(("DPoP", dpop))
        elif dpop:
            hdrs += [("DPoP", p) for p in dpop]
        return self.post(path, data, auth=auth, headers=hdrs, base=base)

    def client_credentials(self, client_id: str = "conf1", secret: str | None = None, **kw: Any) -> TestResponse:
        data = {"grant_type": "client_credentials", "scope": kw.pop("scope", "read")}
        return self.token(data, auth=(client_id, secret or f"{client_id}-secret"), **kw)

    def authorize(self, client_id: str = "pub1", *, scope: str = "openid read", **params: str) -> tuple[str, str]:
        """Run /authorize (auto-consent) and return (code, code_verifier)."""
        verifier, challenge = pkce()
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": scope,
                 "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256", **params}
        response = self.client.get("/authorize", base_url=self.issuer, query_string=query)
        assert response.status_code == 302, response.get_data(as_text=True)
        location = urlsplit(response.headers["Location"])
        values = parse_qs(location.query)
        assert values["state"] == ["s1"] and values["iss"] == [self.issuer]
        return values["code"][0], verifier

    def code_grant(self, code: str, verifier: str, client_id: str = "pub1", **kw: Any) -> TestResponse:
        data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": REDIRECT, "client_id": client_id}
        return self.token(data, **kw)


@pytest.fixture
def make_idp(tmp_path: Path) -> Iterator[Callable[..., Idp]]:
    def make(**overrides: Any) -> Idp:
        overrides.setdefault("issuer", ISS)
        overrides.setdefault("state_dir", str(tmp_path / "state"))
        overrides.setdefault("replay", "memory")
        clock = overrides.pop("clock", time.time)
        config = load_config(overrides.pop("config_file", None), **overrides)
        return Idp(create_app(config, clock=clock), Path(overrides["state_dir"]))

    yield make


@pytest.fixture
def idp(make_idp: Callable[..., Idp]) -> Idp:
    return make_idp()


__all__ = ["ISS", "REDIRECT", "TOKEN_URL", "decode_jwt", "escaped_pem", "pkce", "thumbprint"]
