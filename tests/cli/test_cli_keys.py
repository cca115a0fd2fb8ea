"""keygen, proof and thumbprint: exact RFC 9449 proofs, checked by joserfc and by hand on cryptography."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc import jws as jose_jws
from joserfc.jwk import import_key
from joserfc.jws import JWSRegistry

from tokenguard.client.keys import generate_jwk

from .conftest import Run
from .independent import ath, rfc7638, verify_proof

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

ALGS = ("ES256", "EdDSA", "RS256", "PS256")

RFC7638_RSA = {  # RFC 7638 §3.1
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCi"
         "FV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c"
         "7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF4"
         "4-csFCur-kEgU8awapJzKnqDKgw",
}
RFC9449_EC = {  # RFC 9449 §4.1 Figure 4 (and the jkt of §6.1)
    "kty": "EC", "crv": "P-256",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
}
RFC8037_ED25519 = {  # RFC 8037 A.2 (public) and A.1 (private)
    "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
KNOWN = [(RFC7638_RSA, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"),
         (RFC9449_EC, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"),
         (RFC8037_ED25519, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"),
         ({**RFC8037_ED25519, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"},
          "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")]


class _Registry(JWSRegistry):
    max_header_length = 4096  # an RSA jwk in the header exceeds joserfc's 512-byte default


def _no_traceback(result: object) -> None:
    assert "Traceback" not in result.err  # type: ignore[attr-defined]
    lines = [line for line in result.err.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.err  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ keygen


@pytest.mark.parametrize("alg", ALGS)
def test_keygen_writes_private_key_0600_and_prints_thumbprint(run: Run, tmp_path: Path, alg: str) -> None:
    out = tmp_path / "key.jwk"
    result = run("keygen", "--alg", alg, "--out", str(out))
    assert result.code == 0, result.err
    jwk = json.loads(out.read_text())
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert "d" in jwk and jwk["alg"] == alg
    assert result.out.strip() == jwk["kid"] == rfc7638(jwk)


def test_keygen_refuses_to_overwrite_without_force(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "key.jwk"
    out.write_text("precious")
    result = run("keygen", "--out", str(out))
    assert result.code != 0 and "--force" in result.err
    _no_traceback(result)
    assert out.read_text() == "precious"
    result = run("keygen", "--out", str(out), "--force")
    assert result.code == 0
    assert json.loads(out.read_text())["kty"] == "EC"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_keygen_to_stdout_and_json(run: Run) -> None:
    result = run("keygen", "--alg", "EdDSA")
    jwk = json.loads(result.out)
    assert jwk["kty"] == "OKP" and "d" in jwk and jwk["kid"] in result.err
    result = run("keygen", "--json")
    data = json.loads(result.out)
    assert data["jkt"] == data["kid"] == rfc7638(data["jwk"])


def test_keygen_bad_alg_is_one_line(run: Run) -> None:
    result = run("keygen", "--alg", "HS256")
    assert result.code == 2 and "invalid choice" in result.err
    _no_traceback(result)


# ------------------------------------------------------------------------------------------- proof


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    paths = {}
    for alg in ALGS:
        path = directory / f"{alg}.jwk"
        path.write_text(json.dumps(generate_jwk(alg)))
        paths[alg] = path
    return paths


@pytest.mark.parametrize("alg", ALGS)
def test_proof_verifies_with_joserfc_and_by_hand(run: Run, keys: dict[str, Path], alg: str) -> None:
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"  # RFC 9449 §7.1 example token
    result = run("proof", "--key", str(keys[alg]), "--method", "post",
                 "--url", "https://Resource.example.org/protectedresource?x=1#frag", "--token", token,
                 "--nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")
    assert result.code == 0, result.err
    proof = result.out.strip()
    private = json.loads(keys[alg].read_text())
    # 1) independent: cryptography only, R||S converted by hand
    header, claims = verify_proof(proof)
    assert header["alg"] == alg and set(header) == {"typ", "alg", "jwk"}
    assert rfc7638(header["jwk"]) == private["kid"]
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://Resource.example.org/protectedresource"
    assert claims["ath"] == ath(token) and claims["nonce"] == "eyJ7S_zG.eyJH0-Z.HX4w-7v"
    assert abs(claims["iat"] - time.time()) < 5
    # 2) joserfc, with the public key taken from the proof
    obj = jose_jws.deserialize_compact(proof, import_key(header["jwk"]), algorithms=[alg],
                                       registry=_Registry(algorithms=[alg]))
    assert json.loads(obj.payload) == claims


@pytest.mark.parametrize("alg", ALGS)
def test_proof_is_accepted_by_tokenguards_verifier(run: Run, keys: dict[str, Path], alg: str) -> None:
    from tokenguard.core.dpop import DpopVerifier

    result = run("proof", "--key", str(keys[alg]), "--method", "GET", "--url", "https://api.test/r", "--token", "AT")
    verified = DpopVerifier(algs=ALGS).verify([result.out.strip()], htm="GET", htu="https://api.test/r",
                                              access_token="AT")
    assert verified.jkt == json.loads(keys[alg].read_text())["kid"]


def test_proof_token_from_file_stdin_env_and_token_response(run: Run, keys: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def claims_for(*extra: str) -> dict[str, object]:
        result = run("proof", "--key", str(keys["ES256"]), "-m", "GET", "-u", "https://a.test/", *extra)
        assert result.code == 0, result.err
        return verify_proof(result.out.strip())[1]

    (tmp_path / "at").write_text("file-token\n")
    assert claims_for("--token", f"@{tmp_path / 'at'}")["ath"] == ath("file-token")
    (tmp_path / "resp.json").write_text(json.dumps({"access_token": "json-token", "token_type": "DPoP"}))
    assert claims_for("--token", f"@{tmp_path / 'resp.json'}")["ath"] == ath("json-token")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("stdin-token"))
    assert claims_for("--token", "-")["ath"] == ath("stdin-token")
    monkeypatch.setenv("TOKENGUARD_TOKEN", "env-token")
    assert claims_for()["ath"] == ath("env-token")
    monkeypatch.delenv("TOKENGUARD_TOKEN")
    assert "ath" not in claims_for()


def test_proof_json_output(run: Run, keys: dict[str, Path]) -> None:
    result = run("proof", "--key", str(keys["EdDSA"]), "-m", "GET", "-u", "https://a.test/x", "--json")
    data = json.loads(result.out)
    assert verify_proof(data["proof"]) == (data["header"], data["claims"])


@pytest.mark.parametrize(("argv", "needle"), [
    (("--key", "/nonexistent/key.jwk"), "not found"),
    (("--key", "{dir}/bad.json"), "not JSON"),
    (("--key", "{dir}/public.jwk"), "public key"),
    (("--key", "{dir}/oct.jwk"), "symmetric"),
    (("--key", "{dir}/ES256.jwk", "--url", "/relative"), "absolute"),
    (("--key", "{dir}/ES256.jwk", "--token", "@/nonexistent/at"), "not found"),
])
def test_proof_errors_are_one_line(run: Run, keys: dict[str, Path], argv: tuple[str, ...], needle: str) -> None:
    directory = keys["ES256"].parent
    (directory / "bad.json").write_text("{not json")
    (directory / "public.jwk").write_text(json.dumps(RFC9449_EC))
    (directory / "oct.jwk").write_text(json.dumps({"kty": "oct", "k": "c2VjcmV0"}))
    full = ["proof", "--method", "GET", "--url", "https://a.test/"] + [a.format(dir=directory) for a in argv]
    result = run(*full)
    assert result.code != 0 and needle in result.err, result.err
    _no_traceback(result)


# -------------------------------------------------------------------------------------- thumbprint


@pytest.mark.parametrize(("jwk", "expected"), KNOWN)
def test_thumbprint_known_answers(run: Run, tmp_path: Path, jwk: dict[str, str], expected: str) -> None:
    path = tmp_path / "k.jwk"
    path.write_text(json.dumps(jwk))
    result = run("thumbprint", "--jwk", str(path))
    assert (result.code, result.out.strip()) == (0, expected)
    assert json.loads(run("thumbprint", "--jwk", str(path), "--json").out) == {"jkt": expected}


def test_thumbprint_of_certificate_pem_and_der(run: Run, tmp_path: Path) -> None:
    import hashlib

    import trustme

    from .independent import b64e

    cert = trustme.CA().issue_cert("client.test").cert_chain_pems[0]
    pem = tmp_path / "c.pem"
    cert.write_to_path(str(pem))
    from cryptography import x509

    der_bytes = x509.load_pem_x509_certificate(cert.bytes()).public_bytes(Encoding.DER)
    (tmp_path / "c.der").write_bytes(der_bytes)
    expected = b64e(hashlib.sha256(der_bytes).digest())
    assert run("thumbprint", "--cert", str(pem)).out.strip() == expected
    assert run("thumbprint", "--cert", str(tmp_path / "c.der")).out.strip() == expected
    assert json.loads(run("thumbprint", "--cert", str(pem), "--json").out) == {"x5t#S256": expected}


def test_thumbprint_errors(run: Run, tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"\x00\x01junk")
    for argv in (("--cert", str(tmp_path / "missing.pem")), ("--cert", str(tmp_path / "junk")),
                 ("--jwk", str(tmp_path / "missing.jwk")), ("--jwk", str(tmp_path / "junk"))):
        result = run("thumbprint", *argv)
        assert result.code == 2, argv
        _no_traceback(result)
    result = run("thumbprint")
    assert result.code == 2
    _no_traceback(result)


# ------------------------------------------------------------------------------- the command itself


def test_help_has_examples(run: Run) -> None:
    for verb in ("keygen", "proof", "token", "call", "thumbprint", "check-config"):
        result = run(verb, "--help")
        assert result.code == 0 and "example" in result.out, verb
    assert "keygen" in run("--help").out


def test_no_verb_prints_help(run: Run) -> None:
    result = run()
    assert result.code == 2 and "keygen" in result.err


def test_python_dash_m_and_console_script_work(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tokenguard", "thumbprint", "--jwk", "/nonexistent"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "tokenguard thumbprint: error: JWK file not found: /nonexistent"
