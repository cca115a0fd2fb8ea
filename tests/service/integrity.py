"""Shared pieces of the request-integrity tests: an engine-independent header source and a service to ask."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from joserfc import jwk

from tokenguard.core.dpop import create_proof
from tokenguard.settings import parse_config
from tokenguard.settings.wiring import build_service
from tokenguard.web.adapters import Incoming
from tokenguard.web.service import AuthService

ROUTES = [
    {"name": "admin", "path": "/admin/*", "binding": "any", "scopes": ["admin"]},
    {"name": "mtls", "path": "/mtls/*", "binding": "mtls"},
    {"name": "dpop", "path": "/dpop/*", "binding": "dpop"},
    {"name": "catch-all", "path": "*", "binding": "any"},
]
ORIGIN = "https://api.test"


class ListHeaders:
    """Header fields as an exact-name engine (ASGI, RSGI) hands them over: every line, names as sent."""

    def __init__(self, fields: Iterable[tuple[str, str]]) -> None:
        self._fields = list(fields)

    def values(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self._fields if key.lower() == wanted)

    def fields(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)


def nginx_fields(uri: str, *, method: str = "GET", host: str = "api.test", port: str = "443",
                 proto: str = "https") -> list[tuple[str, str]]:
    """What the shipped nginx config sends for ``method uri`` on ``proto://host:port``."""
    return [("Host", host), ("X-Original-Method", method), ("X-Original-URI", uri), ("X-Forwarded-Proto", proto),
            ("X-Forwarded-Host", host), ("X-Forwarded-Port", port), ("Connection", "close")]


def incoming(fields: Iterable[tuple[str, str]], *, peer: str | None = "127.0.0.1", path: str = "/auth",
             problem: str | None = None) -> Incoming:
    return Incoming(method="GET", path=path, target=path, scheme="http", peer=peer, headers=ListHeaders(fields),
                    problem=problem)


def make_service(issuer: Any, tmp_path: Any, **sections: dict[str, Any]) -> AuthService:
    doc: dict[str, Any] = {"server": {"state_dir": str(tmp_path), "log_decisions": False},
                           "token": {"audience": "https://api.test"},
                           "issuer": [{"issuer": "https://as.test", "jwks_uri": "https://as.test/jwks"}],
                           "replay": {"store": "memory"}, "route": ROUTES}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return build_service(parse_config(doc, "test.toml", env={}), fetch=issuer.fetch)


class DpopHolder:
    """A DPoP key and an access token bound to it."""

    def __init__(self, issuer: Any, scope: str = "read") -> None:
        self.key = jwk.generate_key("EC", "P-256", private=True)
        self.token = issuer.token(cnf={"jkt": self.key.thumbprint()}, scope=scope)

    def fields(self, url: str, method: str = "GET", **claims: Any) -> list[tuple[str, str]]:
        proof = create_proof(self.key.as_dict(private=True), htm=method, htu=url, access_token=self.token,
                             extra_claims=claims or None)
        return [("Authorization", f"DPoP {self.token}"), ("DPoP", proof)]
