"""idp-mock configuration: a TOML file (``--config idp.toml``), ``IDP_MOCK_<KEY>`` environment overrides
for top-level keys, then command-line flags. Every key is optional; unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tokenguard.core.dpop import DEFAULT_ALGS
from tokenguard.core.jwk import ASYMMETRIC_ALGS
from tokenguard.settings.loader import ConfigError, Problems, read_table, read_toml

__all__ = ["ClientConfig", "ConfigError", "IdpConfig", "UserConfig", "load_config"]

DEFAULT_ISSUER = "http://127.0.0.1:9000"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
#: The demo stack's protected origin (nginx :8000 in deploy/nginx/tokenguard.conf).
DEFAULT_AUDIENCE = "https://localhost:8000"
#: The nginx TLS front that serves the RFC 8705 aliases (deploy/nginx/idp-mtls.conf).
DEFAULT_MTLS_BASE = "https://localhost:9443"
SIGNING_ALGS = ("RS256", "PS256", "ES256", "EdDSA")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "idp-mock"


@dataclass(frozen=True)
class UserConfig:
    """A demo resource owner; ``sub`` is also the ``login_hint`` that selects it."""

    sub: str
    name: str = ""
    email: str = ""
    preferred_username: str = ""


@dataclass(frozen=True)
class ClientConfig:
    """One ``[[client]]`` table: RFC 7591 client metadata plus idp-mock specifics."""

    client_id: str
    client_secret: str | None = None
    token_endpoint_auth_method: str = "client_secret_basic"
    grant_types: tuple[str, ...] = ("client_credentials",)
    redirect_uris: tuple[str, ...] = ()
    scope: str = "openid profile email read write"
    dpop_bound_access_tokens: bool = False
    tls_client_certificate_bound_access_tokens: bool = False
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_file: str | None = None
    access_token_format: str = "jwt"
    audience: str | None = None
    introspect: bool = False
    require_pushed_authorization_requests: bool = False


@dataclass(frozen=True)
class IdpConfig:
    issuer: str = DEFAULT_ISSUER
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    state_dir: str = ""
    mtls_base: str = DEFAULT_MTLS_BASE
    audience: str = DEFAULT_AUDIENCE
    resources: tuple[str, ...] = ()
    dpop_nonce: bool = False
    dpop_algs: tuple[str, ...] = DEFAULT_ALGS
    dpop_iat_past: int = 60
    dpop_iat_future: int = 15
    access_token_lifetime: int = 600
    refresh_token_lifetime: int = 86400
    code_lifetime: int = 60
    par_lifetime: int = 60
    signing_alg: str = "RS256"
    rotation_grace: int = 300
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    mtls_trust_anchors: str | None = None
    admin_secret: str | None = None
    replay: str = "embedded"
    demo_clients: bool = True
    demo_user: str = "alice"
    workers: int = 1
    users: tuple[UserConfig, ...] = ()
    clients: tuple[ClientConfig, ...] = field(default=())

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_state_dir()


_TABLES = {"client": (ClientConfig, "clients"), "user": (UserConfig, "users")}
ENV_PREFIX = "IDP_MOCK_"


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> IdpConfig:
    """Read ``path`` (if any), apply ``IDP_MOCK_*`` variables, then non-None ``overrides``; validate.

    Uses tokenguard's settings loader, so both report every problem at once as ``FILE: key: problem``.
    """
    file = str(path) if path else "<defaults>"
    raw = read_toml(path) if path else {}
    problems = Problems()
    tables: dict[str, Any] = {}
    for key, (cls, field_name) in _TABLES.items():
        items = raw.get(key, [])
        if not isinstance(items, list) or not all(isinstance(v, dict) for v in items):
            problems.add(file, key, f"must be an array of tables ([[{key}]])")
            continue
        read = [read_table(cls, item, source=file, where=f"{key}[{i}]", problems=problems)
                for i, item in enumerate(items)]
        tables[field_name] = tuple(item for item in read if item is not None)
    top = {k: v for k, v in raw.items() if k not in _TABLES}
    config = read_table(IdpConfig, top, source=file, where="", problems=problems, env=os.environ,
                        env_prefix=ENV_PREFIX, skip=("users", "clients"))
    problems.raise_if_any()
    assert config is not None
    config = replace(config, **tables, **{k: v for k, v in overrides.items() if v is not None})
    validate(config, file)
    return config


def _absolute_url(value: str, https_only: bool = False) -> bool:
    scheme, sep, rest = value.partition("://")
    ok = sep and scheme in (("https",) if https_only else ("http", "https")) and rest and "#" not in value
    return bool(ok) and "?" not in value


def validate(config: IdpConfig, file: str = "<config>") -> None:
    """Cross-field checks that types alone cannot express; every problem is reported at once."""
    problems = Problems()
    check = problems.check
    check(_absolute_url(config.issuer), file, "issuer", "must be an absolute http(s) URL without query or fragment")
    check(not config.issuer.endswith("/"), file, "issuer",
          "must not end with '/' (RFC 8414 §2 and the byte-identical rule)")
    check(not config.mtls_base or _absolute_url(config.mtls_base, https_only=True), file, "mtls_base",
          "must be an absolute https URL (or empty to disable)")
    check(_absolute_url(config.audience), file, "audience", "must be an absolute URL")
    bad = set(config.dpop_algs) - ASYMMETRIC_ALGS
    check(not bad and bool(config.dpop_algs), file, "dpop_algs",
          f"must be non-empty asymmetric JWS algs, not {sorted(bad)}")
    check(config.signing_alg in SIGNING_ALGS, file, "signing_alg", f"must be one of {', '.join(SIGNING_ALGS)}")
    for cidr in config.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.add(file, "trusted_proxies", f"{cidr!r} is not a valid network")
    for name in ("port", "workers", "access_token_lifetime", "refresh_token_lifetime", "code_lifetime",
                 "par_lifetime", "rotation_grace", "dpop_iat_past", "dpop_iat_future"):
        check(getattr(config, name) >= 0, file, name, "must not be negative")
    check(config.access_token_lifetime >= 1 and config.code_lifetime >= 1, file, "access_token_lifetime",
          "lifetimes must be positive")
    seen: set[str] = set()
    for client in config.clients:
        check(client.client_id not in seen, file, "client", f"duplicate client_id {client.client_id!r}")
        seen.add(client.client_id)
    check(len({u.sub for u in config.users}) == len(config.users), file, "user", "duplicate user sub")
    problems.raise_if_any()
