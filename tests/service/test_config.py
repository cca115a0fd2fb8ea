"""Config: defaults, environment overrides, and precise errors (file, key, problem)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenguard.settings import ConfigError, load_config, parse_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokenguard.toml"
    path.write_text(text)
    return path


def test_defaults_are_safe() -> None:
    config = parse_config({}, env={})
    assert config.server.listen == "127.0.0.1:8080"
    assert config.replay.store == "embedded"
    assert config.server.trusted_proxies == ("127.0.0.0/8", "::1/128")
    assert config.policy.default == "deny"
    (route,) = config.policy.routes
    assert route.binding == "bound"  # with no routes, only sender-constrained tokens pass


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[server]\nlisten = 8080\n", "server.listen", "must be a string"),
    ("[server]\nbogus = 1\n", "server.bogus", "unknown key"),
    ("[server]\nengine = \"uwsgi\"\n", "server.engine", "must be uvicorn or gunicorn"),
    ("[server]\nengine = \"granian\"\n", "server.engine", "granian is no longer supported"),
    ("[nope]\n", "nope", "unknown section"),
    ("[dpop]\nalgs = [\"HS256\"]\n", "dpop.algs", "not an asymmetric"),
    ("[dpop]\nalgs = [\"none\"]\n", "dpop.algs", "not an asymmetric"),
    ("[replay]\nstore = \"mongodb://x\"\n", "replay.store", "must be memory"),
    ("[replay]\nstore = \"sqlite:///tmp/x.db\"\n", "replay.store", "must be memory"),  # gone with issue 10
    ("[replay]\nmax_entries = 0\n", "replay.max_entries", "must be from 1"),
    ("[replay]\nwait_replicas = 1\n", "replay.wait_replicas", "Redis store only"),
    ("[replay]\nallow_eviction = true\n", "replay.allow_eviction", "Redis store only"),
    ("[mtls]\ncert_format = \"der\"\n", "mtls.cert_format", "must be one of"),
    ("[[issuer]]\nissuer = \"https://as.test\"\n", "token.audience", "required"),
    ("[[route]]\nbinding = \"maybe\"\n", "route[0].binding", "must be one of"),
    ("[[route]]\nclaims = [{path = \"a\", regex = \"(\"}]\n", "route[0].claims[0].regex", "invalid regular"),
    ("[[route]]\nclaims = [{path = \"a\"}]\n", "route[0].claims[0]", "needs exactly one"),
    ("[[route]]\nheaders = {\"Bad Header\" = \"sub\"}\n", "route[0].headers.Bad Header", "not a valid header"),
    ("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "server.trusted_proxies", "not a CIDR"),
    ("[server\n", "-", "not valid TOML"),
])
def test_errors_name_file_key_and_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.source == str(path)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", env={})


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[token]\naudience = \"https://api.test\"\n[[issuer]]\nissuer = \"https://as.test\"\n")
    config = load_config(path, env={"TOKENGUARD_REPLAY_STORE": "redis://127.0.0.1:6379/0",
                                    "TOKENGUARD_SERVER_WORKERS": "4", "TOKENGUARD_DPOP_ALGS": "ES256, EdDSA",
                                    "TOKENGUARD_SERVER_LOG_DECISIONS": "false",
                                    "TOKENGUARD_ISSUER_INTROSPECTION_CLIENT_ID": "rs",
                                    "TOKENGUARD_ISSUER_INTROSPECTION_CLIENT_SECRET": "s3cret"})
    assert config.replay.store == "redis://127.0.0.1:6379/0"
    assert config.server.workers == 4
    assert config.dpop.algs == ("ES256", "EdDSA")
    assert config.server.log_decisions is False
    assert config.issuers[0].introspection_client_id == "rs"


def test_environment_value_of_wrong_type_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"TOKENGUARD_SERVER_WORKERS": "many"})
    assert caught.value.key == "server.workers"
    assert "TOKENGUARD_SERVER_WORKERS" in caught.value.source


def test_route_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, """
[token]
audience = ["https://api.test"]
[[issuer]]
issuer = "https://as.test"
[[route]]
name = "admin"
host = ["api.test"]
methods = ["get", "POST"]
path = "/admin/*"
binding = "dpop"
scopes = ["admin"]
claims = [{path = "realm_access.roles", contains = "admin"}, {path = "email_verified", equals = true}]
headers = {"X-User" = "preferred_username"}
dpop_nonce = true
""")
    (route,) = load_config(path, env={}).policy.routes
    assert route.methods == ("GET", "POST") and route.binding == "dpop" and route.dpop_nonce
    assert route.matches("GET", "api.test", "/admin/users")
    assert not route.matches("DELETE", "api.test", "/admin/users")
    assert not route.matches("GET", "other.test", "/admin/users")
    assert route.headers == (("X-User", "preferred_username"),)
