"""tokenguard's configuration, one frozen dataclass per TOML section; defaults come from the core.

Each class's fields are the section's keys (README, "Configuration"); ``problems`` checks what a type
alone cannot say, so ``check-config``, start-up and a reload all refuse the same things.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenguard.core import access_token, dpop, introspection, jwks, nonce, replay
from tokenguard.core.jwk import ASYMMETRIC_ALGS
from tokenguard.core.policy import ReplayMode, RouteBinding
from tokenguard.core.policy.claims import OPERATORS
from tokenguard.core.replay import scheme_of, store_problem
from tokenguard.web.adapters import forwarded
from tokenguard.web.certs import FORMATS as CERT_FORMATS
from tokenguard.web.logs import LEVELS

if TYPE_CHECKING:
    from tokenguard.settings import Config

Issue = tuple[str, str]  # (key, problem)
_URL_ORIGIN = re.compile(r"^https?://[^/?#@\s]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
ENGINES = ("uvicorn", "gunicorn")
#: Engines that were supported once, and why they are refused now (README, "Request integrity").
RETIRED_ENGINES = {
    "granian": "granian is no longer supported: its WSGI mode reads X_Foo as X-Foo and copies the process "
               "environment into every request, and its server answers more than 100 header fields with 431 "
               "before tokenguard runs (nginx turns that into 500)",
}
MAX_WAIT = 10.0  # seconds: a request never waits longer on the network (the engines' worker timeout is 30)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "tokenguard"


def listen_problem(listen: str) -> str | None:
    """``HOST:PORT`` with a port from 1 to 65535, or ``unix:PATH``."""
    if listen.startswith("unix:"):
        return None if len(listen) > len("unix:") else "unix: needs a socket path"
    match = re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+):(\d{1,5})$", listen)
    if match is None:
        return "must be HOST:PORT or unix:PATH"
    if not 1 <= int(match.group(2)) <= 65535:
        return f"port {match.group(2)} is out of range (1-65535)"
    return None


def state_dir_problem(path: Path) -> str | None:
    """Why tokenguard could not keep its state in ``path`` (created at start if missing), or None."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def readable_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be read, or None."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"


def host_problems(config: Config) -> Iterator[Issue]:
    """What start-up would trip over on this host although the file is valid: the state directory and
    secret files. ``check-config``, start-up and a reload all ask (keys here are full paths)."""
    if (problem := state_dir_problem(config.state_dir)) is not None:
        yield "server.state_dir", problem
    files = [("dpop.nonce_secret_file", config.dpop.nonce_secret_file)]
    files += [(f"issuer[{i}].introspection_client_secret_file", issuer.introspection_client_secret_file)
              for i, issuer in enumerate(config.issuers)]
    for key, path in files:
        if path and (problem := readable_problem(path)) is not None:
            yield key, problem


def origin_problem(url: str) -> str | None:
    return None if _URL_ORIGIN.match(url.rstrip("/")) else "must be scheme://host[:port] with no path"


@dataclass(frozen=True)
class ServerSettings:
    listen: str = "127.0.0.1:8080"
    engine: str = "uvicorn"
    workers: int = 2
    threads: int = 1
    mode: str = "auth_request"
    realm: str = "tokenguard"
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    public_url: str = ""
    fail_status: int = 500
    state_dir: str = ""
    log_level: str = "info"
    log_decisions: bool = True
    log_explain: bool = False
    max_header_bytes: int = forwarded.DEFAULT_MAX_HEADER_BYTES
    max_header_fields: int = forwarded.DEFAULT_MAX_HEADER_FIELDS

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_state_dir()

    def problems(self) -> Iterator[Issue]:
        if (problem := listen_problem(self.listen)) is not None:
            yield "listen", problem
        if self.engine in RETIRED_ENGINES:
            yield "engine", f"{RETIRED_ENGINES[self.engine]}; use {' or '.join(ENGINES)}"
        elif self.engine not in ENGINES:
            yield "engine", f"must be {' or '.join(ENGINES)}"
        if self.workers < 1:
            yield "workers", "must be at least 1"
        if self.threads < 1:
            yield "threads", "must be at least 1"
        for key in ("max_header_bytes", "max_header_fields"):
            if getattr(self, key) < 1:
                yield key, "must be at least 1"
        if self.mode not in ("auth_request", "direct"):
            yield "mode", "must be auth_request or direct"
        if self.fail_status not in (401, 500, 503):
            yield "fail_status", "must be 500, 503 or 401"
        if self.log_level.lower() not in LEVELS:
            yield "log_level", f"must be one of {', '.join(LEVELS)}"
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                yield "trusted_proxies", f"{cidr!r} is not a CIDR"
        if self.public_url and (problem := origin_problem(self.public_url)):
            yield "public_url", problem


def _algs_problems(algs: tuple[str, ...]) -> Iterator[Issue]:
    bad = [a for a in algs if a not in ASYMMETRIC_ALGS]
    if bad:
        yield "algs", f"{bad[0]} is not an asymmetric JWS alg"
    if not algs:
        yield "algs", "must not be empty"


@dataclass(frozen=True)
class TokenSettings:
    audience: tuple[str, ...] = ()
    algs: tuple[str, ...] = access_token.DEFAULT_TOKEN_ALGS
    leeway: int = access_token.DEFAULT_LEEWAY
    require_typ: bool = True
    required_claims: tuple[str, ...] = access_token.RFC9068_REQUIRED
    jwks_ttl: int = jwks.DEFAULT_TTL
    jwks_refresh_cooldown: int = jwks.DEFAULT_COOLDOWN
    jwks_max_stale: int = jwks.DEFAULT_MAX_STALE
    key_wait: float = jwks.DEFAULT_KEY_WAIT
    http_timeout: float = 3.0
    cache_size: int = access_token.DEFAULT_CACHE_SIZE

    def problems(self) -> Iterator[Issue]:
        yield from _algs_problems(self.algs)
        for key in ("leeway", "jwks_ttl", "jwks_refresh_cooldown", "cache_size"):
            if getattr(self, key) < 0:
                yield key, "must not be negative"
        if self.jwks_max_stale < self.jwks_ttl:
            yield "jwks_max_stale", f"must be at least token.jwks_ttl ({self.jwks_ttl})"
        if not 0 <= self.key_wait <= MAX_WAIT:
            yield "key_wait", f"must be from 0 to {MAX_WAIT:g} seconds"
        if not 0 < self.http_timeout <= MAX_WAIT:
            yield "http_timeout", f"must be more than 0 and at most {MAX_WAIT:g} seconds"


@dataclass(frozen=True)
class IssuerSettings:
    issuer: str = ""
    jwks_uri: str = ""
    audience: tuple[str, ...] = ()
    introspection_endpoint: str = ""
    introspection_client_id: str = ""
    introspection_client_secret: str = field(default="", repr=False)
    introspection_client_secret_file: str = ""
    introspection_cache_ttl: int = introspection.DEFAULT_CACHE_TTL

    def problems(self) -> Iterator[Issue]:
        if not self.issuer:
            yield "issuer", "required: the issuer identifier URL, exactly as in the tokens' iss"
        elif not re.match(r"^https?://[^/?#\s]+", self.issuer) or "#" in self.issuer or "?" in self.issuer:
            yield "issuer", f"{self.issuer!r} is not an http(s) URL without query or fragment"
        for key in ("jwks_uri", "introspection_endpoint"):
            value = getattr(self, key)
            if value and not re.match(r"^https?://[^/?#\s]+", value):
                yield key, f"{value!r} is not an http(s) URL"
        if self.introspection_client_id and not (self.introspection_client_secret
                                                 or self.introspection_client_secret_file):
            yield "introspection_client_secret", "required with introspection_client_id"
        if self.introspection_cache_ttl < 0:
            yield "introspection_cache_ttl", "must not be negative"


@dataclass(frozen=True)
class DpopSettings:
    algs: tuple[str, ...] = dpop.DEFAULT_ALGS
    iat_past: int = dpop.DEFAULT_IAT_PAST
    iat_future: int = dpop.DEFAULT_IAT_FUTURE
    nonce_secret: str = field(default="", repr=False)
    nonce_secret_file: str = ""
    nonce_step: int = nonce.DEFAULT_STEP
    nonce_accept_steps: int = nonce.DEFAULT_ACCEPT_STEPS
    max_proof_bytes: int = dpop.DEFAULT_MAX_PROOF_BYTES
    max_jti_length: int = dpop.DEFAULT_MAX_JTI_LENGTH

    def problems(self) -> Iterator[Issue]:
        yield from _algs_problems(self.algs)
        for key in ("iat_past", "iat_future", "nonce_accept_steps"):
            if getattr(self, key) < 0:
                yield key, "must not be negative"
        for key in ("nonce_step", "max_proof_bytes", "max_jti_length"):
            if getattr(self, key) < 1:
                yield key, "must be at least 1"
        if self.nonce_secret and len(self.nonce_secret.encode()) < 16:
            yield "nonce_secret", "must be at least 16 bytes"


@dataclass(frozen=True)
class ReplaySettings:
    store: str = "embedded"
    max_entries: int = replay.DEFAULT_MAX_ENTRIES
    allow_eviction: bool = False
    wait_replicas: int = 0

    def problems(self) -> Iterator[Issue]:
        if (problem := store_problem(self.store)) is not None:
            yield "store", problem
        if not 1 <= self.max_entries <= replay.MAX_MAX_ENTRIES:
            yield "max_entries", f"must be from 1 to {replay.MAX_MAX_ENTRIES}"
        if self.wait_replicas < 0:
            yield "wait_replicas", "must not be negative"
        redis = scheme_of(self.store) in ("redis", "rediss", "unix", "redis+cluster")
        if self.wait_replicas and not redis:
            yield "wait_replicas", "applies to a Redis store only"
        if self.allow_eviction and not redis:
            yield "allow_eviction", "applies to a Redis store only"


@dataclass(frozen=True)
class MtlsSettings:
    cert_header: str = "X-SSL-Client-Cert"
    cert_format: str = "escaped-pem"

    def problems(self) -> Iterator[Issue]:
        if not _HEADER_NAME.match(self.cert_header):
            yield "cert_header", "not a valid header name"
        if self.cert_format not in CERT_FORMATS:
            yield "cert_format", f"must be one of {', '.join(CERT_FORMATS)}"


@dataclass(frozen=True)
class ProxySettings:
    original_method_header: str = "X-Original-Method"
    original_uri_header: str = "X-Original-URI"

    def problems(self) -> Iterator[Issue]:
        for key in ("original_method_header", "original_uri_header"):
            if not _HEADER_NAME.match(getattr(self, key)):
                yield key, "not a valid header name"


@dataclass(frozen=True)
class PolicySettings:
    default: str = "deny"

    def problems(self) -> Iterator[Issue]:
        if self.default not in ("deny", "allow"):
            yield "default", "must be deny or allow"


@dataclass(frozen=True)
class RouteSettings:
    """One ``[[route]]`` table as written; :func:`tokenguard.settings.parse_config` builds the core ``Route``."""

    name: str = ""
    host: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = ()
    path: str = "*"
    binding: str = RouteBinding.ANY.value
    scopes: tuple[str, ...] = ()
    any_scopes: tuple[str, ...] = ()
    claims: tuple[dict[str, Any], ...] = ()
    headers: dict[str, Any] = field(default_factory=dict)
    dpop_nonce: bool = False
    public_url: str = ""
    replay: str = ReplayMode.CONSUME.value

    def problems(self) -> Iterator[Issue]:
        if self.binding not in {b.value for b in RouteBinding}:
            yield "binding", f"must be one of {', '.join(b.value for b in RouteBinding)}"
        if self.replay not in {m.value for m in ReplayMode}:
            yield "replay", "must be consume or off"
        for key in ("scopes", "any_scopes"):
            if any(not s or any(c.isspace() for c in s) for s in getattr(self, key)):
                yield key, 'must be a list of single scopes, e.g. ["read", "write"]'
        for header, claim in self.headers.items():
            if not _HEADER_NAME.match(header):
                yield f"headers.{header}", "not a valid header name"
            elif not isinstance(claim, str) or not claim:
                yield f"headers.{header}", "must name a claim path"
        if self.public_url and (problem := origin_problem(self.public_url)):
            yield "public_url", problem
        for n, rule in enumerate(self.claims):
            key = f"claims[{n}]"
            unknown = sorted(set(rule) - {"path", *OPERATORS})
            if unknown:
                yield f"{key}.{unknown[0]}", "unknown key"
                continue
            if not isinstance(rule.get("path"), str) or not rule.get("path"):
                yield f"{key}.path", "required"
            ops = [op for op in OPERATORS if op in rule]
            if len(ops) != 1:
                yield key, f"needs exactly one of {', '.join(OPERATORS)}"
                continue
            try:
                OPERATORS[ops[0]].parse(rule[ops[0]])
            except ValueError as exc:
                yield f"{key}.{ops[0]}", str(exc)
