"""``tokenguard call`` against a local resource server that demands a nonce and checks proofs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenguard.client.keys import generate_jwk

from .conftest import Run
from .independent import ath, verify_proof
from .servers import Recorder, fake_jwt, resource_server, serve


@pytest.fixture
def rs() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    with serve(resource_server(recorder)) as url:
        yield url, recorder


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    jwk = generate_jwk("ES256")
    path = tmp_path_factory.mktemp("call") / "key.jwk"
    path.write_text(json.dumps(jwk))
    return path, jwk


def _bound_token(jwk: dict[str, str]) -> str:
    return fake_jwt({"sub": "u1", "cnf": {"jkt": jwk["kid"]}})


def test_call_retries_once_with_the_nonce_and_passes_the_verifier(run: Run, rs: tuple[str, Recorder],
                                                                  key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    token = _bound_token(key[1])
    result = run("call", "GET", f"{url}/r/items?page=2#top", "--key", str(key[0]), "--token", token)
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("HTTP 200")
    body = json.loads(result.out.split("\n\n", 1)[1])
    assert body == {"jkt": key[1]["kid"], "htm": "GET", "htu": f"{url}/r/items"}
    first, second = recorder.requests
    assert first["headers"]["Authorization"] == f"DPoP {token}"
    proofs = [verify_proof(r["dpop"][0])[1] for r in (first, second)]
    assert "nonce" not in proofs[0] and proofs[1]["nonce"]
    assert proofs[0]["jti"] != proofs[1]["jti"]  # a fresh proof per request
    assert all(p["ath"] == ath(token) and p["htu"] == f"{url}/r/items" for p in proofs)


def test_call_verbose_shows_proof_but_never_token_or_signature(run: Run, rs: tuple[str, Recorder],
                                                               key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    token = _bound_token(key[1])
    result = run("call", "GET", f"{url}/r", "--key", str(key[0]), "--token", token, "-v")
    assert result.code == 0
    assert '"typ": "dpop+jwt"' in result.err and '"htm": "GET"' in result.err and "retried once" in result.err
    assert token not in result.err and token not in result.out
    for request in recorder.requests:
        header, payload, signature = request["dpop"][0].split(".")
        assert signature not in result.err and header not in result.err


def test_call_retries_only_once(run: Run, rs: tuple[str, Recorder], key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    result = run("call", "GET", f"{url}/always-nonce", "--key", str(key[0]), "--token", _bound_token(key[1]))
    assert result.code == 1 and result.out.startswith("HTTP 401")
    assert len(recorder.requests) == 2
    assert verify_proof(recorder.requests[1]["dpop"][0])[1]["nonce"] == "n-1"


def test_call_retries_on_any_dpop_nonce_header_on_401(run: Run, rs: tuple[str, Recorder],
                                                      key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    run("call", "GET", f"{url}/nonce-header", "--key", str(key[0]), "--token", _bound_token(key[1]))
    assert len(recorder.requests) == 2
    assert verify_proof(recorder.requests[1]["dpop"][0])[1]["nonce"] == "header-only"


def test_call_post_with_data_and_headers(run: Run, rs: tuple[str, Recorder],
                                         key: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    url, recorder = rs
    (tmp_path / "body.json").write_text('{"item": 1}')
    result = run("call", "post", f"{url}/echo", "--key", str(key[0]), "--token", _bound_token(key[1]),
                 "--data", f"@{tmp_path / 'body.json'}", "-H", "X-Trace: abc", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["status"] == 200 and data["body"]["body"] == '{"item": 1}'
    assert data["body"]["headers"]["X-Trace"] == "abc"
    assert data["body"]["headers"]["Content-Type"] == "application/json"
    assert verify_proof(recorder.requests[0]["dpop"][0])[1]["htm"] == "POST"


def test_unbound_token_goes_as_bearer_without_proof(run: Run, rs: tuple[str, Recorder],
                                                    key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    token = fake_jwt({"sub": "u1"})
    assert run("call", "GET", f"{url}/echo", "--key", str(key[0]), "--token", token).code == 0
    assert recorder.requests[-1]["headers"]["Authorization"] == f"Bearer {token}"
    assert recorder.requests[-1]["dpop"] == []


def test_bearer_flag_downgrades_a_bound_token(run: Run, rs: tuple[str, Recorder],
                                              key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    token = _bound_token(key[1])
    result = run("call", "GET", f"{url}/r", "--token", token, "--bearer")
    assert result.code == 1  # the stand-in refuses Bearer
    assert recorder.requests[-1]["headers"]["Authorization"] == f"Bearer {token}"
    assert recorder.requests[-1]["dpop"] == []


def test_token_response_json_and_env(run: Run, rs: tuple[str, Recorder], key: tuple[Path, dict[str, str]],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, recorder = rs
    token = _bound_token(key[1])
    (tmp_path / "token.json").write_text(json.dumps({"access_token": token, "token_type": "DPoP"}))
    assert run("call", "GET", f"{url}/r", "--key", str(key[0]), "--token", f"@{tmp_path / 'token.json'}").code == 0
    monkeypatch.setenv("TOKENGUARD_TOKEN", token)
    assert run("call", "GET", f"{url}/r", "--key", str(key[0])).code == 0


def test_auth_request_mode_describes_the_original_request(run: Run, rs: tuple[str, Recorder],
                                                          key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    token = _bound_token(key[1])
    result = run("call", "POST", "https://api.test:8443/orders/7?x=1", "--key", str(key[0]), "--token", token,
                 "--auth-request", f"{url}/echo", "--data", "ignored")
    assert result.code == 0
    request = recorder.requests[0]
    assert request["method"] == "GET" and request["body"] == ""
    headers = request["headers"]
    assert (headers["X-Original-Method"], headers["X-Original-URI"]) == ("POST", "/orders/7?x=1")
    assert (headers["X-Forwarded-Proto"], headers["X-Forwarded-Host"], headers["X-Forwarded-Port"]) == (
        "https", "api.test", "8443")
    claims = verify_proof(request["dpop"][0])[1]
    assert (claims["htm"], claims["htu"]) == ("POST", "https://api.test:8443/orders/7")


@pytest.mark.parametrize(("argv", "needle"), [
    (("GET", "http://127.0.0.1:9/x", "--token", "{bound}", "--key", "{key}"), "cannot connect"),
    (("GET", "http://127.0.0.1:9/x", "--token", "{bound}"), "DPoP-bound"),
    (("GET", "ftp://example/x", "--token", "t"), "absolute http(s)"),
    (("GET", "http://127.0.0.1:9/x"), "no access token"),
    (("GET", "http://127.0.0.1:9/x", "--token", "t", "-H", "nocolon"), "bad header"),
    (("GET", "http://127.0.0.1:9/x", "--token", "t", "--cacert", "/nonexistent.pem"), "not found"),
    (("GET", "http://127.0.0.1:9/x", "--token", "t", "--cacert", "a", "--insecure"), "not allowed with"),
])
def test_call_errors_are_one_line(run: Run, key: tuple[Path, dict[str, str]], argv: tuple[str, ...],
                                  needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENGUARD_TOKEN", raising=False)
    full = [a.format(bound=_bound_token(key[1]), key=key[0]) for a in argv]
    result = run("call", *full)
    assert result.code == 2 and needle in result.err, result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
