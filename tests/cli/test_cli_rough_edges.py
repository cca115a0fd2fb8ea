"""Issue 13 §4.4: the messages a newcomer got from ``token``, ``proof`` and ``call``, each reproduced.

* https against an http port printed a cut-off ``SSLError(1, '[SSL: )``;
* a wrong client secret read ``The client cannot authenticate with methods: [...]`` (see test_cli_token);
* a PEM key read ``not JSON``; ``keygen --from-pem`` now converts one;
* ``call --token token.json`` (no ``@``) sent the file name as the token;
* an expired token was not flagged before it was sent;
* ``call --proof`` sends a given proof (the demo's replay step prints it as the command to repeat).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokenguard.client.keys import generate_jwk

from .conftest import Run
from .independent import rfc7638, verify_proof
from .servers import Recorder, authorization_server, fake_jwt, resource_server, serve


@pytest.fixture
def as_url() -> Iterator[str]:
    with serve(authorization_server(Recorder())) as url:
        yield url


@pytest.fixture
def rs() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    with serve(resource_server(recorder)) as url:
        yield url, recorder


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    jwk = generate_jwk("ES256")
    path = tmp_path / "key.jwk"
    path.write_text(json.dumps(jwk))
    return path, jwk


def _one_line(result: object) -> str:
    err = result.err  # type: ignore[attr-defined]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return str(err)


def test_https_against_an_http_port_says_so(run: Run, as_url: str) -> None:
    result = run("token", "--issuer", as_url.replace("http://", "https://"), "--client-id", "client1",
                 "--client-secret", "s3cret")
    assert result.code == 2
    err = _one_line(result)
    assert "nothing speaks TLS on that port" in err and "is it http:// rather than https://?" in err
    assert "SSLError" not in err and "[SSL: )" not in err
    assert err.count("TLS handshake") == 1  # said once, not once per metadata URL


def test_a_pem_key_is_recognised_and_converted(run: Run, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "client.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    result = run("proof", "--key", str(pem), "--method", "GET", "--url", "https://api.test/x")
    assert result.code == 2
    err = _one_line(result)
    assert "this is a PEM file" in err and f"tokenguard keygen --from-pem {pem} --out key.jwk" in err
    assert "not JSON" not in err
    out = tmp_path / "key.jwk"
    converted = run("keygen", "--from-pem", str(pem), "--out", str(out))
    assert converted.code == 0, converted.err
    jwk = json.loads(out.read_text())
    numbers = private.private_numbers()
    assert int.from_bytes(_b64d(jwk["d"]), "big") == numbers.private_value  # the same key, not a new one
    assert jwk["alg"] == "ES256" and converted.out.strip() == jwk["kid"] == rfc7638(jwk)
    proof = run("proof", "--key", str(out), "--method", "GET", "--url", "https://api.test/x")
    assert proof.code == 0 and verify_proof(proof.out.strip())[0]["jwk"]["x"] == jwk["x"]


def _b64d(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(("make", "argv", "needle"), [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), (), "at least 2048 bits"),
    (lambda: ed25519.Ed25519PrivateKey.generate(), ("--alg", "ES256"), "this Ed25519 key cannot sign ES256"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), ("--encrypt",), "encrypted"),
])
def test_from_pem_refusals_are_one_line(run: Run, tmp_path: Path, make: object, argv: tuple[str, ...],
                                        needle: str) -> None:
    private = make()  # type: ignore[operator]
    encryption = (serialization.BestAvailableEncryption(b"pw") if "--encrypt" in argv
                  else serialization.NoEncryption())
    pem = tmp_path / "k.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    result = run("keygen", "--from-pem", str(pem), *[a for a in argv if a != "--encrypt"])
    assert result.code == 2 and needle in _one_line(result)


def test_ed25519_keygen_signs_with_the_fully_specified_name(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "ed.jwk"
    assert run("keygen", "--alg", "Ed25519", "--out", str(out)).code == 0
    proof = run("proof", "--key", str(out), "--method", "GET", "--url", "https://api.test/x")
    header = json.loads(_b64d(proof.out.strip().split(".")[0]))
    assert header["alg"] == "Ed25519" and header["jwk"]["crv"] == "Ed25519"


def test_a_token_that_is_a_file_name_is_refused(run: Run, rs: tuple[str, Recorder], key: tuple[Path, dict[str, str]],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, recorder = rs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token.json").write_text(json.dumps({"access_token": fake_jwt({"sub": "u"}), "token_type": "DPoP"}))
    for value in ("token.json", "other-token.json"):  # an existing file, and a name that can only be a file
        result = run("call", "GET", f"{url}/echo", "--key", str(key[0]), "--token", value)
        assert result.code == 2 and f"read the file with --token @{value}" in _one_line(result)
    assert recorder.requests == []  # nothing was sent


def test_an_expired_token_is_flagged_before_it_is_sent(run: Run, rs: tuple[str, Recorder],
                                                       key: tuple[Path, dict[str, str]]) -> None:
    url, recorder = rs
    expired = fake_jwt({"sub": "u", "exp": int(time.time()) - 120, "cnf": {"jkt": key[1]["kid"]}})
    result = run("call", "GET", f"{url}/echo", "--key", str(key[0]), "--token", expired)
    assert "warning: the access token expired 1" in result.err and "s ago" in result.err
    assert len(recorder.requests) == 1  # a warning, not a refusal: the server decides
    fresh = fake_jwt({"sub": "u", "exp": int(time.time()) + 600, "cnf": {"jkt": key[1]["kid"]}})
    assert "expired" not in run("call", "GET", f"{url}/echo", "--key", str(key[0]), "--token", fresh).err


def test_call_sends_a_given_proof_for_a_replay(run: Run, rs: tuple[str, Recorder], key: tuple[Path, dict[str, str]],
                                               tmp_path: Path) -> None:
    url, recorder = rs
    token = fake_jwt({"sub": "u", "cnf": {"jkt": key[1]["kid"]}})
    first = run("call", "GET", f"{url}/r", "--key", str(key[0]), "--token", token, "--json")
    assert first.code == 0, first.out
    used = recorder.requests[-1]["dpop"][0]
    (tmp_path / "proof.txt").write_text(used + "\n")
    again = run("call", "GET", f"{url}/r", "--key", str(key[0]), "--token", token, "--proof", f"@{tmp_path}/proof.txt",
                "--json")
    assert recorder.requests[-1]["dpop"] == [used]
    assert again.code == 1 and json.loads(again.out)["body"]["reason"] == "dpop_replay"
    bearer = run("call", "GET", f"{url}/r", "--token", fake_jwt({"sub": "u"}), "--proof", used)
    assert bearer.code == 2 and "--proof goes with the DPoP scheme" in _one_line(bearer)
