"""Configuration: TOML ``[[client]]`` tables, environment overrides, precise errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from idp_mock.config import ConfigError, load_config

from .conftest import Idp


def test_toml_clients_and_users(make_idp: Callable[..., Idp], tmp_path: Path) -> None:
    path = tmp_path / "idp.toml"
    path.write_text('audience = "https://api.test"\ndemo_clients = false\n'
                    '[[user]]\nsub = "carol"\nname = "Carol"\n'
                    '[[client]]\nclient_id = "svc"\nclient_secret = "svc-secret"\nscope = "read"\n'
                    'access_token_format = "opaque"\n')
    idp = make_idp(config_file=path, demo_user="carol")
    response = idp.client_credentials("svc", "svc-secret")
    assert response.status_code == 200 and "." not in response.json["access_token"]
    assert idp.client_credentials("conf1").status_code == 401  # demo clients off


@pytest.mark.parametrize(("text", "message"), [
    ("nope = 1\n", "nope: unknown key"),
    ("dpop_nonce = 'yes'\n", "dpop_nonce: must be true or false"),
    ("issuer = 'https://as.test/'\n", "must not end with '/'"),
    ("dpop_algs = ['HS256']\n", "dpop_algs"),
    ("[[client]]\nclient_id = 'x'\ncolor = 'red'\n", "client[0].color: unknown key"),
    ("[[client]]\nclient_secret = 's'\n", "client[0].client_id: required"),
    ("[[client]]\nclient_id = 'x'\ntoken_endpoint_auth_method = 'tls_client_auth'\n", "exactly one"),
    ("[[client]]\nclient_id = 'x'\ntoken_endpoint_auth_method = 'none'\n", "client_credentials"),
    ("trusted_proxies = ['nonsense']\n", "trusted_proxies"),
    ("x = [\n", "not valid TOML"),
])
def test_invalid_configs_are_refused_precisely(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "idp.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        from idp_mock.clients import Registry

        Registry(load_config(path, state_dir=str(tmp_path / "s")))
    assert message in str(info.value)
    assert str(path) in str(info.value) or "client" in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "idp.toml"
    path.write_text("nope = 1\ndpop_nonce = 'yes'\n[[client]]\ncolor = 'red'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, state_dir=str(tmp_path / "s"))
    keys = [p.key for p in info.value.problems]
    assert {"nope", "dpop_nonce", "client[0].color", "client[0].client_id"} <= set(keys), keys


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDP_MOCK_DPOP_NONCE", "true")
    monkeypatch.setenv("IDP_MOCK_ISSUER", "https://env.test")
    config = load_config(None, state_dir=str(tmp_path))
    assert config.dpop_nonce is True and config.issuer == "https://env.test"
    assert load_config(None, issuer="https://flag.test").issuer == "https://flag.test"  # flags win
