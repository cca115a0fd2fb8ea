"""``tokenguard token`` against a local stand-in authorization server (RFC 8414 + RFC 9449 §8 nonces)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenguard.client.http import parse_www_authenticate
from tokenguard.client.keys import generate_jwk

from .conftest import Run
from .independent import verify_proof
from .servers import Recorder, authorization_server, serve


@pytest.fixture
def as_(request: pytest.FixtureRequest) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    options = getattr(request, "param", {})
    with serve(authorization_server(recorder, **options)) as url:
        yield url, recorder


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    jwk = generate_jwk("ES256")
    path = tmp_path_factory.mktemp("token") / "key.jwk"
    path.write_text(json.dumps(jwk))
    return path, jwk


def _posts(recorder: Recorder) -> list[dict[str, object]]:
    return [r for r in recorder.requests if r["method"] == "POST"]


def test_dpop_token_with_nonce_retry(run: Run, as_: tuple[str, Recorder], key: tuple[Path, dict[str, str]],
                                     tmp_path: Path) -> None:
    url, recorder = as_
    (tmp_path / "secret").write_text("s3cret\n")
    result = run("token", "--issuer", url, "--client-id", "client1", "--client-secret-file",
                 str(tmp_path / "secret"), "--dpop-key", str(key[0]), "--scope", "read", "-v")
    assert result.code == 0, result.err
    response = json.loads(result.out)
    assert response["token_type"] == "DPoP"
    assert recorder.requests[0]["path"] == "/.well-known/oauth-authorization-server"
    first, second = _posts(recorder)
    assert first["form"] == {"grant_type": "client_credentials", "scope": "read"}
    assert first["headers"]["Authorization"].startswith("Basic ")
    claims = [verify_proof(p["dpop"][0])[1] for p in (first, second)]  # type: ignore[index]
    assert "nonce" not in claims[0] and claims[1]["nonce"]
    assert all(c["htm"] == "POST" and c["htu"] == f"{url}/token" and "ath" not in c for c in claims)
    assert "retried once" in result.err and "s3cret" not in result.err + result.out


def test_secret_from_environment_and_post_method(run: Run, as_: tuple[str, Recorder],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, recorder = as_
    monkeypatch.setenv("TOKENGUARD_CLIENT_SECRET", "s3cret")
    result = run("token", "--issuer", url, "--client-id", "client1", "--auth-method", "client_secret_post")
    assert result.code == 0, result.err
    assert json.loads(result.out)["token_type"] == "Bearer"
    (post,) = _posts(recorder)
    assert post["form"]["client_secret"] == "s3cret" and "Authorization" not in post["headers"]  # type: ignore[index]


@pytest.mark.parametrize("as_", [{"mtls_alias": "http://127.0.0.1:9/mtls/token"}], indirect=True)
def test_cert_uses_the_mtls_endpoint_alias(run: Run, as_: tuple[str, Recorder], tmp_path: Path) -> None:
    import trustme

    url, _ = as_
    issued = trustme.CA().issue_cert("client1")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "c.key"))
    result = run("token", "--issuer", url, "--client-id", "client1", "--cert", str(tmp_path / "c.pem"),
                 "--cert-key", str(tmp_path / "c.key"))
    assert result.code == 2 and "cannot connect to http://127.0.0.1:9" in result.err  # went to the alias


def test_token_endpoint_error_is_one_line_exit_1(run: Run, as_: tuple[str, Recorder]) -> None:
    url, _ = as_
    result = run("token", "--issuer", url, "--client-id", "client1", "--client-secret", "wrong")
    assert result.code == 1
    assert result.err.strip() == (f"tokenguard token: error: client authentication failed: {url}/token answered "
                                  "HTTP 401 invalid_client; check the client id (client1) and its secret and "
                                  "--auth-method (the server said: bad secret)")
    assert "wrong" not in result.err


@pytest.mark.parametrize(("argv", "needle"), [
    (("--issuer", "http://127.0.0.1:9"), "cannot connect"),
    (("--issuer", "{url}/other"), "no authorization server metadata"),
    (("--issuer", "{url}/"), "RFC 8414"),
    (("--issuer", "{url}", "--dpop-key", "/nonexistent.jwk"), "not found"),
    (("--issuer", "{url}", "--client-secret-file", "/nonexistent"), "not found"),
    (("--issuer", "{url}", "--cert-key", "k.pem"), "--cert-key needs --cert"),
    (("--issuer", "not a url"), "absolute http(s)"),
])
def test_token_errors_are_one_line(run: Run, as_: tuple[str, Recorder], argv: tuple[str, ...], needle: str) -> None:
    url, _ = as_
    result = run("token", "--client-id", "client1", *[a.format(url=url) for a in argv])
    assert result.code == 2 and needle in result.err, result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


def test_www_authenticate_parser() -> None:
    parsed = parse_www_authenticate(
        'Bearer realm="tg", DPoP realm="tg", error="use_dpop_nonce", '
        'error_description="Resource server requires nonce, really", algs="ES256 PS256", Basic abc==')
    assert [c.scheme for c in parsed] == ["Bearer", "DPoP", "Basic"]
    assert parsed[1].params == {"realm": "tg", "error": "use_dpop_nonce",
                                "error_description": "Resource server requires nonce, really",
                                "algs": "ES256 PS256"}
    assert parse_www_authenticate(['DPoP error=use_dpop_nonce', 'Bearer'])[0].params["error"] == "use_dpop_nonce"
