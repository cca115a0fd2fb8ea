"""idp-mock configuration: a TOML file (``--config idp.toml``), ``IDP_MOCK_<KEY>`` environment overrides
for top-level keys, then command-line flags. Every key is optional; unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tokenguard.core.dpop import DEFAULT_ALGS
from tokenguard.core.jwk import ASYMMETRIC_ALGS

DEFAULT_ISSUER = "http://127.0.0.1:9000"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
#: The demo stack's protected origin (nginx :8000 in deploy/nginx/tokenguard.conf).
DEFAULT_AUDIENCE = "https://localhost:8000"
#: The nginx TLS front that serves the RFC 8705 aliases (deploy/nginx/idp-mtls.conf).
DEFAULT_MTLS_BASE = "https://localhost:9443"
SIGNING_ALGS = ("RS256", "PS256", "ES256", "EdDSA")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file, key and problem."""


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


_TABLES = {"client": "clients", "user": "users"}


def _coerce(file: str, key: str, value: Any, default: Any) -> Any:
    """Check a TOML value against the type of the field's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{file}: {key} must be a non-negative integer")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{file}: {key} must be a list of strings")
        return tuple(value)
    if key in ("jwks",):
        if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
            raise ConfigError(f"{file}: {key} must be a JWK Set table with a keys array")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{file}: {key} must be a string")
    return value


def _table(cls: type, file: str, where: str, raw: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{file}: unknown key {where}.{key}")
        default = known[key].default
        values[key] = _coerce(file, f"{where}.{key}", value, default if default is not None else "")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{file}: {where} is missing a required key ({exc})") from exc


def _env_overrides(base: IdpConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(IdpConfig):
        if f.name in ("users", "clients"):
            continue
        raw = os.environ.get(f"IDP_MOCK_{f.name.upper()}")
        if raw is None:
            continue
        default = getattr(base, f.name)
        key = f"IDP_MOCK_{f.name.upper()}"
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"environment: {key} must be true or false")
            out[f.name] = raw.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            if not raw.isdigit():
                raise ConfigError(f"environment: {key} must be a non-negative integer")
            out[f.name] = int(raw)
        elif isinstance(default, tuple):
            out[f.name] = tuple(v for v in raw.replace(",", " ").split() if v)
        else:
            out[f.name] = raw
    return out


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> IdpConfig:
    """Read ``path`` (if any), apply ``IDP_MOCK_*`` variables, then non-None ``overrides``; validate."""
    file = str(path) if path else "<defaults>"
    values: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
        known = {f.name: f for f in fields(IdpConfig)}
        for key, value in raw.items():
            if key in _TABLES:
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise ConfigError(f"{file}: {key} must be an array of tables ([[{key}]])")
                cls = ClientConfig if key == "client" else UserConfig
                values[_TABLES[key]] = tuple(_table(cls, file, f"{key}[{i}]", t) for i, t in enumerate(value))
                continue
            if key not in known or key in _TABLES.values():
                raise ConfigError(f"{file}: unknown key {key}")
            default = known[key].default
            values[key] = _coerce(file, key, value, default if default is not None else "")
    config = IdpConfig(**values)
    config = replace(config, **_env_overrides(config))
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    validate(config, file)
    return config


def _absolute_url(value: str, https_only: bool = False) -> bool:
    scheme, sep, rest = value.partition("://")
    ok = sep and scheme in (("https",) if https_only else ("http", "https")) and rest and "#" not in value
    return bool(ok) and "?" not in value


def validate(config: IdpConfig, file: str = "<config>") -> None:
    """Cross-field checks that types alone cannot express."""
    if not _absolute_url(config.issuer):
        raise ConfigError(f"{file}: issuer must be an absolute http(s) URL without query or fragment")
    if config.issuer.endswith("/"):
        raise ConfigError(f"{file}: issuer must not end with '/' (RFC 8414 §2 and the byte-identical rule)")
    if config.mtls_base and not _absolute_url(config.mtls_base, https_only=True):
        raise ConfigError(f"{file}: mtls_base must be an absolute https URL (or empty to disable)")
    if not _absolute_url(config.audience):
        raise ConfigError(f"{file}: audience must be an absolute URL")
    bad = set(config.dpop_algs) - ASYMMETRIC_ALGS
    if bad or not config.dpop_algs:
        raise ConfigError(f"{file}: dpop_algs must be non-empty asymmetric JWS algs, not {sorted(bad)}")
    if config.signing_alg not in SIGNING_ALGS:
        raise ConfigError(f"{file}: signing_alg must be one of {', '.join(SIGNING_ALGS)}")
    for cidr in config.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ConfigError(f"{file}: trusted_proxies has an invalid network {cidr!r}") from exc
    if config.access_token_lifetime < 1 or config.code_lifetime < 1:
        raise ConfigError(f"{file}: lifetimes must be positive")
    seen: set[str] = set()
    for client in config.clients:
        if client.client_id in seen:
            raise ConfigError(f"{file}: duplicate client_id {client.client_id!r}")
        seen.add(client.client_id)
    users = {u.sub for u in config.users}
    if len(users) != len(config.users):
        raise ConfigError(f"{file}: duplicate user sub")
