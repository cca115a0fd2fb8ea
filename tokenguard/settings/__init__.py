"""tokenguard's configuration: TOML (stdlib ``tomllib``) with ``TOKENGUARD_<SECTION>_<KEY>`` overrides.

Every key is optional with a safe default; unknown keys, wrong types and bad values are errors that
name the file, the key and the problem, all of them at once (``tokenguard check-config``).
:mod:`.wiring` builds the service from a :class:`Config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tokenguard.core.policy import DEFAULT_ROUTES, Policy, ReplayMode, Route, RouteBinding
from tokenguard.core.policy.claims import OPERATORS, ClaimRule
from tokenguard.settings.loader import ConfigError, Problems, read_table, read_toml
from tokenguard.settings.schema import (
    DpopSettings,
    IssuerSettings,
    MtlsSettings,
    PolicySettings,
    ProxySettings,
    ReplaySettings,
    RouteSettings,
    ServerSettings,
    TokenSettings,
)

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]

ENV_PREFIX = "TOKENGUARD_"
SECTIONS: dict[str, type] = {
    "server": ServerSettings, "token": TokenSettings, "dpop": DpopSettings, "replay": ReplaySettings,
    "mtls": MtlsSettings, "proxy": ProxySettings, "policy": PolicySettings,
}
S = TypeVar("S")


@dataclass(frozen=True)
class Config:
    """A validated configuration: one settings object per section, the issuers, and the route policy."""

    source: str
    server: ServerSettings
    token: TokenSettings
    issuers: tuple[IssuerSettings, ...]
    dpop: DpopSettings
    replay: ReplaySettings
    mtls: MtlsSettings
    proxy: ProxySettings
    policy: Policy

    @property
    def state_dir(self) -> Path:
        return self.server.state_path


def _route(settings: RouteSettings, index: int) -> Route:
    claims = tuple(ClaimRule.build(rule["path"], op, rule[op]) for rule in settings.claims
                   for op in OPERATORS if op in rule)
    return Route(name=settings.name or f"route{index}", hosts=settings.host,
                 methods=tuple(m.upper() for m in settings.methods), path=settings.path,
                 binding=RouteBinding(settings.binding), scopes=settings.scopes, any_scopes=settings.any_scopes,
                 claims=claims, headers=tuple(settings.headers.items()), dpop_nonce=settings.dpop_nonce,
                 public_url=settings.public_url.rstrip("/") or None, replay=ReplayMode(settings.replay))


def _checked(settings: S | None, cls: type[S], source: str, where: str, problems: Problems) -> S:
    """``settings`` with its problems recorded (kept even then: the cross-section checks must not report
    a problem that is only a default standing in for it)."""
    if settings is None:
        return cls()
    for key, problem in settings.problems():  # type: ignore[attr-defined]
        problems.add(source, f"{where}.{key}", problem)
    return settings


def parse_config(document: Mapping[str, Any], source: str = "<config>",
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML document (plus environment overrides); raise :class:`ConfigError` listing
    every problem."""
    env = os.environ if env is None else env
    problems = Problems()
    for name in sorted(set(document) - set(SECTIONS) - {"issuer", "route"}):
        problems.add(source, name, "unknown section")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        table = read_table(cls, document.get(name), source=source, where=name, problems=problems, env=env,
                           env_prefix=f"{ENV_PREFIX}{name.upper()}_")
        sections[name] = _checked(table, cls, source, name, problems)
    raw_issuers = document.get("issuer", [])
    if isinstance(raw_issuers, dict):
        raw_issuers = [raw_issuers]
    if not isinstance(raw_issuers, list):
        problems.add(source, "issuer", "must be [[issuer]] tables")
        raw_issuers = []
    if not raw_issuers and f"{ENV_PREFIX}ISSUER_ISSUER" in env:
        raw_issuers = [{}]
    issuers = []
    for i, table in enumerate(raw_issuers):
        where = f"issuer[{i}]"
        issuer = read_table(IssuerSettings, table, source=source, where=where, problems=problems, env=env,
                            env_prefix=f"{ENV_PREFIX}ISSUER_" if i == 0 else None)
        issuers.append(_checked(issuer, IssuerSettings, source, where, problems))
    seen: set[str] = set()
    for i, issuer in enumerate(issuers):
        if issuer.issuer and issuer.issuer in seen:
            problems.add(source, f"issuer[{i}].issuer", f"{issuer.issuer!r} is configured twice")
        seen.add(issuer.issuer)
    token: TokenSettings = sections["token"]
    if issuers and not token.audience and not all(i.audience for i in issuers):
        problems.add(source, "token.audience",
                     "required: the identifier(s) of this resource server that tokens must carry in aud")
    raw_routes = document.get("route", [])
    if not isinstance(raw_routes, list):
        problems.add(source, "route", "must be [[route]] tables")
        raw_routes = []
    routes = []
    for i, table in enumerate(raw_routes):
        where = f"route[{i}]"
        settings = read_table(RouteSettings, table, source=source, where=where, problems=problems)
        before = len(problems.items)
        if settings is not None:
            settings = _checked(settings, RouteSettings, source, where, problems)
            if len(problems.items) == before:
                routes.append(_route(settings, i))
    problems.raise_if_any()
    policy_settings: PolicySettings = sections["policy"]
    return Config(source=source, server=sections["server"], token=token, issuers=tuple(issuers),
                  dpop=sections["dpop"], replay=sections["replay"], mtls=sections["mtls"], proxy=sections["proxy"],
                  policy=Policy(routes=tuple(routes) or DEFAULT_ROUTES, default=policy_settings.default))


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (or only defaults and environment when ``path`` is None)."""
    env = os.environ if env is None else env
    path = path or env.get("TOKENGUARD_CONFIG")
    if not path:
        return parse_config({}, "<defaults>", env)
    return parse_config(read_toml(path), str(path), env)
