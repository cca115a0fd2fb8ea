"""TOML configuration (stdlib ``tomllib``) with ``TOKENGUARD_<SECTION>_<KEY>`` environment overrides.

Every key is optional with a safe default; unknown keys and wrong types are errors that name the
file, the key and the problem (``tokenguard check-config``). ``build_verifier`` wires the pure core.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenguard.core.jwk import ASYMMETRIC_ALGS
from tokenguard.core.policy import BINDINGS, CLAIM_OPS, ClaimRule, Policy, Route
from tokenguard.web.certs import FORMATS as CERT_FORMATS

ENV_PREFIX = "TOKENGUARD_"


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "tokenguard")


#: section -> key -> (type, default). Types: str, int, float, bool, list (of str).
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "server": {
        "listen": (str, "127.0.0.1:8080"),
        "engine": (str, "gunicorn"),
        "workers": (int, 2),
        "threads": (int, 1),
        "mode": (str, "auth_request"),
        "realm": (str, "tokenguard"),
        "trusted_proxies": (list, ["127.0.0.0/8", "::1/128"]),
        "public_url": (str, ""),
        "fail_status": (int, 500),
        "state_dir": (str, ""),
        "log_level": (str, "info"),
        "log_decisions": (bool, True),
    },
    "token": {
        "audience": (list, []),
        "algs": (list, ["RS256", "PS256", "ES256", "EdDSA"]),
        "leeway": (int, 60),
        "require_typ": (bool, True),
        "required_claims": (list, ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]),
        "jwks_ttl": (int, 300),
        "jwks_refresh_cooldown": (int, 30),
        "http_timeout": (float, 3.0),
        "cache_size": (int, 10000),
    },
    "issuer": {
        "issuer": (str, ""),
        "jwks_uri": (str, ""),
        "audience": (list, []),
        "introspection_endpoint": (str, ""),
        "introspection_client_id": (str, ""),
        "introspection_client_secret": (str, ""),
        "introspection_client_secret_file": (str, ""),
        "introspection_cache_ttl": (int, 60),
    },
    "dpop": {
        "algs": (list, ["ES256", "ES384", "PS256", "RS256", "EdDSA"]),
        "iat_past": (int, 60),
        "iat_future": (int, 15),
        "nonce_secret": (str, ""),
        "nonce_secret_file": (str, ""),
        "nonce_step": (int, 60),
        "nonce_accept_steps": (int, 2),
        "max_proof_bytes": (int, 8192),
        "max_jti_length": (int, 256),
    },
    "replay": {
        "store": (str, "embedded"),
    },
    "mtls": {
        "cert_header": (str, "X-SSL-Client-Cert"),
        "cert_format": (str, "escaped-pem"),
    },
    "proxy": {
        "original_method_header": (str, "X-Original-Method"),
        "original_uri_header": (str, "X-Original-URI"),
    },
    "policy": {
        "default": (str, "deny"),
    },
}

ROUTE_SCHEMA: dict[str, tuple[type, Any]] = {
    "name": (str, ""),
    "host": (list, ["*"]),
    "methods": (list, []),
    "path": (str, "*"),
    "binding": (str, "any"),
    "scopes": (list, []),
    "any_scopes": (list, []),
    "claims": (list, []),
    "headers": (dict, {}),
    "dpop_nonce": (bool, False),
    "public_url": (str, ""),
    "replay": (str, "consume"),
}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


class ConfigError(ValueError):
    """A configuration problem: ``str()`` reads ``FILE: key: problem``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True)
class Config:
    source: str
    server: Mapping[str, Any]
    token: Mapping[str, Any]
    issuers: tuple[Mapping[str, Any], ...]
    dpop: Mapping[str, Any]
    replay: Mapping[str, Any]
    mtls: Mapping[str, Any]
    proxy: Mapping[str, Any]
    policy: Policy

    @property
    def state_dir(self) -> Path:
        return Path(self.server["state_dir"] or _default_state_dir())


def _coerce(source: str, key: str, kind: type, value: Any) -> Any:
    if kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(source, key, "must be a list")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(source, key, f"must be {kind.__name__}, not {type(value).__name__}")
    return value


def _from_env(source: str, key: str, kind: type, raw: str) -> Any:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes", "on")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is list:
            return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(source, key, f"cannot read {raw!r} as {kind.__name__}") from None
    return raw


def _section(source: str, name: str, table: Any, schema: Mapping[str, tuple[type, Any]],
             env: Mapping[str, str], env_prefix: str | None) -> dict[str, Any]:
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(source, name, "must be a table")
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ConfigError(source, f"{name}.{unknown[0]}", "unknown key")
    result = {}
    for key, (kind, default) in schema.items():
        value = table.get(key, default)
        if env_prefix is not None and f"{env_prefix}{key.upper()}" in env:
            value = _from_env(f"environment {env_prefix}{key.upper()}", f"{name}.{key}", kind,
                              env[f"{env_prefix}{key.upper()}"])
        result[key] = _coerce(source, f"{name}.{key}", kind, value)
    return result


def _check(condition: bool, source: str, key: str, problem: str) -> None:
    if not condition:
        raise ConfigError(source, key, problem)


def _route(source: str, index: int, table: Any) -> Route:
    where = f"route[{index}]"
    data = _section(source, where, table, ROUTE_SCHEMA, {}, None)
    _check(data["binding"] in BINDINGS, source, f"{where}.binding", f"must be one of {', '.join(BINDINGS)}")
    _check(data["replay"] in ("consume", "off"), source, f"{where}.replay", "must be consume or off")
    rules = []
    for n, rule in enumerate(data["claims"]):
        key = f"{where}.claims[{n}]"
        _check(isinstance(rule, dict), source, key, "must be a table like {path = \"...\", equals = ...}")
        unknown = set(rule) - {"path", *CLAIM_OPS}
        _check(not unknown, source, f"{key}.{sorted(unknown)[0] if unknown else ''}", "unknown key")
        ops = [op for op in CLAIM_OPS if op in rule]
        _check(isinstance(rule.get("path"), str) and bool(rule.get("path")), source, f"{key}.path", "required")
        _check(len(ops) == 1, source, key, f"needs exactly one of {', '.join(CLAIM_OPS)}")
        op, value = ops[0], rule[ops[0]]
        pattern = None
        if op == "regex":
            _check(isinstance(value, str), source, f"{key}.regex", "must be a string")
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise ConfigError(source, f"{key}.regex", f"invalid regular expression: {exc}") from None
        if op == "one_of":
            _check(isinstance(value, list), source, f"{key}.one_of", "must be a list")
        if op == "present":
            _check(isinstance(value, bool), source, f"{key}.present", "must be true or false")
        rules.append(ClaimRule(rule["path"], op, value, pattern))
    for header, claim in data["headers"].items():
        _check(bool(_HEADER_NAME.match(header)), source, f"{where}.headers.{header}", "not a valid header name")
        _check(isinstance(claim, str) and bool(claim), source, f"{where}.headers.{header}",
               "must name a claim path")
    if data["public_url"]:
        _check(bool(re.match(r"^https?://[^/?#]+$", data["public_url"].rstrip("/"))), source,
               f"{where}.public_url", "must be scheme://host[:port] with no path")
    return Route(name=data["name"] or f"route{index}", hosts=tuple(data["host"]),
                 methods=tuple(m.upper() for m in data["methods"]), path=data["path"],
                 binding=data["binding"], scopes=tuple(data["scopes"]), any_scopes=tuple(data["any_scopes"]),
                 claims=tuple(rules), headers=tuple(data["headers"].items()), dpop_nonce=data["dpop_nonce"],
                 public_url=data["public_url"] or None, replay=data["replay"])


def parse_config(document: Mapping[str, Any], source: str = "<config>",
                 env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    known = set(SCHEMA) | {"route"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigError(source, unknown[0], "unknown section")
    sections = {name: _section(source, name, document.get(name), SCHEMA[name], env,
                               f"{ENV_PREFIX}{name.upper()}_")
                for name in SCHEMA if name != "issuer"}
    raw_issuers = document.get("issuer", [])
    if isinstance(raw_issuers, dict):
        raw_issuers = [raw_issuers]
    _check(isinstance(raw_issuers, list), source, "issuer", "must be [[issuer]] tables")
    if not raw_issuers and f"{ENV_PREFIX}ISSUER_ISSUER" in env:
        raw_issuers = [{}]
    issuers = tuple(_section(source, f"issuer[{i}]", table, SCHEMA["issuer"], env,
                             f"{ENV_PREFIX}ISSUER_" if i == 0 else None)
                    for i, table in enumerate(raw_issuers))
    server, token, dpop = sections["server"], sections["token"], sections["dpop"]
    _check(server["mode"] in ("auth_request", "direct"), source, "server.mode", "must be auth_request or direct")
    _check(server["engine"] in ("gunicorn", "granian"), source, "server.engine", "must be gunicorn or granian")
    _check(server["fail_status"] in (401, 500, 503), source, "server.fail_status", "must be 500, 503 or 401")
    _check(server["workers"] >= 1, source, "server.workers", "must be at least 1")
    _check(server["threads"] >= 1, source, "server.threads", "must be at least 1")
    _check(bool(re.match(r"^(\[[0-9a-fA-F:]+\]|[^:]+):\d+$", server["listen"])) or
           server["listen"].startswith("unix:"), source, "server.listen", "must be HOST:PORT or unix:PATH")
    for cidr in server["trusted_proxies"]:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(source, "server.trusted_proxies", f"{cidr!r} is not a CIDR") from None
    if server["public_url"]:
        _check(bool(re.match(r"^https?://[^/?#]+$", server["public_url"].rstrip("/"))), source,
               "server.public_url", "must be scheme://host[:port] with no path")
    for section, key in (("token", "algs"), ("dpop", "algs")):
        bad = [a for a in sections[section][key] if a not in ASYMMETRIC_ALGS]
        _check(not bad, source, f"{section}.{key}", f"{bad[0] if bad else ''!s} is not an asymmetric JWS alg")
        _check(bool(sections[section][key]), source, f"{section}.{key}", "must not be empty")
    _check(dpop["iat_past"] >= 0 and dpop["iat_future"] >= 0, source, "dpop.iat_past", "must not be negative")
    _check(dpop["nonce_step"] >= 1, source, "dpop.nonce_step", "must be at least 1")
    store = sections["replay"]["store"]
    _check(store in ("memory", "embedded") or store.startswith(
        ("sqlite:///", "redis://", "rediss://", "unix://", "redis+cluster://")),
        source, "replay.store", "must be memory, embedded, sqlite:///PATH or a redis:// URL")
    _check(sections["mtls"]["cert_format"] in CERT_FORMATS, source, "mtls.cert_format",
           f"must be one of {', '.join(CERT_FORMATS)}")
    _check(sections["policy"]["default"] in ("deny", "allow"), source, "policy.default", "must be deny or allow")
    for i, issuer in enumerate(issuers):
        where = f"issuer[{i}]"
        _check(bool(re.match(r"^https?://", issuer["issuer"])), source, f"{where}.issuer",
               "required: the issuer identifier URL, exactly as in the tokens' iss")
        if issuer["introspection_client_id"]:
            _check(bool(issuer["introspection_client_secret"] or issuer["introspection_client_secret_file"]),
                   source, f"{where}.introspection_client_secret", "required with introspection_client_id")
        _check(bool(issuer["audience"] or token["audience"]), source, "token.audience",
               "required: the identifier(s) of this resource server that tokens must carry in aud")
    raw_routes = document.get("route", [])
    _check(isinstance(raw_routes, list), source, "route", "must be [[route]] tables")
    routes = tuple(_route(source, i, table) for i, table in enumerate(raw_routes))
    if not routes:
        routes = (Route(name="default", binding="bound"),)  # no routes: any sender-constrained token
    return Config(source=source, server=server, token=token, issuers=issuers, dpop=dpop,
                  replay=sections["replay"], mtls=sections["mtls"], proxy=sections["proxy"],
                  policy=Policy(routes=routes, default=sections["policy"]["default"]))


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (or only defaults and environment when ``path`` is None)."""
    env = os.environ if env is None else env
    path = path or env.get("TOKENGUARD_CONFIG")
    if not path:
        return parse_config({}, "<defaults>", env)
    source = str(path)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "-", "file not found") from None
    except OSError as exc:
        raise ConfigError(source, "-", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"not valid TOML: {exc}") from None
    return parse_config(document, source, env)


def read_secret(value: str, file: str, source: str, key: str) -> str:
    """A secret from the config value or, preferably, from a file (so it stays out of the config)."""
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(source, key + "_file", f"cannot read: {exc.strerror}") from None
    return value


def nonce_secret(config: Config) -> bytes:
    """The nonce secret: configured, or generated once per host under the state directory."""
    secret = read_secret(config.dpop["nonce_secret"], config.dpop["nonce_secret_file"], config.source,
                         "dpop.nonce_secret")
    if secret:
        return secret.encode()
    path = config.state_dir / "nonce.secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_bytes().strip()
    # Workers start concurrently: write the secret completely under a private name, then link it into
    # place atomically, so no process ever reads a half-written (empty) secret and all share one.
    tmp = path.with_name(f".nonce.secret.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()


def build_verifier(config: Config, *, clock: Callable[[], float] | None = None,
                   on_jwks_fetch: Callable[[str, bool], None] | None = None) -> Any:
    """Wire the pure core from a config: issuers and their key sources, DPoP, replay store, policy."""
    import time

    from tokenguard.core.access_token import AccessTokenValidator, Issuer
    from tokenguard.core.dpop import DpopVerifier
    from tokenguard.core.introspection import Introspector, http_post_form
    from tokenguard.core.jwks import JwksCache, http_fetch_json
    from tokenguard.core.nonce import RS_LABEL, NonceIssuer
    from tokenguard.core.replay import open_replay_store
    from tokenguard.core.verifier import Verifier

    now = clock or time.time
    token = config.token
    fetch = http_fetch_json(timeout=token["http_timeout"])
    post = http_post_form(timeout=token["http_timeout"])
    issuers = []
    for i, item in enumerate(config.issuers):
        introspector = None
        endpoint = item["introspection_endpoint"]
        if item["introspection_client_id"]:
            if not endpoint:
                endpoint = item["issuer"].rstrip("/") + "/introspect"
            secret = read_secret(item["introspection_client_secret"], item["introspection_client_secret_file"],
                                 config.source, f"issuer[{i}].introspection_client_secret")
            introspector = Introspector(endpoint, item["introspection_client_id"], secret, post=post,
                                        cache_ttl=item["introspection_cache_ttl"], clock=now)
        jwks = JwksCache(item["issuer"], jwks_uri=item["jwks_uri"] or None, fetch=fetch, ttl=token["jwks_ttl"],
                         cooldown=token["jwks_refresh_cooldown"], on_fetch=on_jwks_fetch)
        issuers.append(Issuer(item["issuer"], jwks=jwks, introspector=introspector,
                              audiences=tuple(item["audience"])))
    validator = AccessTokenValidator(issuers, audiences=token["audience"], algs=token["algs"],
                                     leeway=token["leeway"], required_claims=token["required_claims"],
                                     require_typ=token["require_typ"], clock=now, cache_size=token["cache_size"])
    dpop = config.dpop
    nonces = NonceIssuer(nonce_secret(config), RS_LABEL, step=dpop["nonce_step"],
                         accept_steps=dpop["nonce_accept_steps"], clock=now)
    replay = open_replay_store(config.replay["store"], config.state_dir, clock=now)
    dpop_verifier = DpopVerifier(algs=dpop["algs"], replay=replay, nonces=nonces, iat_past=dpop["iat_past"],
                                 iat_future=dpop["iat_future"], max_proof_bytes=dpop["max_proof_bytes"],
                                 max_jti_length=dpop["max_jti_length"], clock=now)
    return Verifier(validator, dpop_verifier, config.policy, realm=config.server["realm"],
                    auth_request_mode=config.server["mode"] == "auth_request",
                    cert_format=config.mtls["cert_format"], fail_status=config.server["fail_status"], clock=now)
