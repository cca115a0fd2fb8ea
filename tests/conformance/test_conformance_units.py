"""Unit tests: the RFC 9110 challenge parser and the suite's minting (RFC 9449, RFC 7638)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from tokenguard.client.challenges import ChallengeSyntaxError, find, parse_challenges
from tokenguard.conformance import expect as X
from tokenguard.conformance.minting import Fixtures, ath, b64u_decode, thumbprint
from tokenguard.conformance.model import Result
from tokenguard.conformance.report import exit_code, to_junit
from tokenguard.conformance.transport import Response

# ---------------------------------------------------------------- RFC 9110 §11.6.1 parser


def test_two_challenges_one_line_any_order() -> None:
    cs = parse_challenges('Bearer realm="tokenguard", DPoP algs="ES256 PS256 EdDSA", realm=tokenguard')
    assert [c.scheme for c in cs] == ["Bearer", "DPoP"]
    assert cs[1].get("algs") == "ES256 PS256 EdDSA" and cs[1].get("REALM") == "tokenguard"


def test_several_header_lines_and_escapes() -> None:
    cs = parse_challenges(['Bearer error="invalid_token"', 'dpop  error = "use_dpop_nonce" ,algs="ES256"',
                           'Newauth title="Login to \\"apps\\"", Basic realm="simple"'])
    assert find(cs, "DPoP")[0].error == "use_dpop_nonce"
    assert find(cs, "newauth")[0].get("title") == 'Login to "apps"'
    assert len(cs) == 4


def test_token68_and_duplicates() -> None:
    cs = parse_challenges("Negotiate abc+/==, Bearer error=invalid_token, error=x")
    assert cs[0].token68 == "abc+/==" and cs[1].duplicate_params == ["error"]


@pytest.mark.parametrize("bad", ['Bearer realm="unterminated', "Bearer =x", 'Bearer realm="a" junk'])
def test_malformed_challenges_raise(bad: str) -> None:
    with pytest.raises(ChallengeSyntaxError):
        parse_challenges(bad)


def test_expectations_use_parsed_challenges() -> None:
    p = X.Profile()
    resp = Response.build(401, [("WWW-Authenticate", 'DPoP algs="EdDSA PS256 ES256", error="invalid_dpop_proof"'),
                                ("WWW-Authenticate", "Bearer")])
    assert X.dpop_error(p, "invalid_dpop_proof").judge(resp) is None
    assert X.bearer_error(p, "invalid_token").judge(resp) is not None
    assert "algs" in (X.dpop_error(p, "x").judge(Response.build(401, [("WWW-Authenticate", "DPoP error=x")])) or "")


# ---------------------------------------------------------------- minting known answers


def test_thumbprint_known_answers_r06() -> None:
    rsa = {"kty": "RSA", "e": "AQAB", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
        "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaS"
        "qzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksIN"
        "HaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert thumbprint(rsa) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    ec = {"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
          "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "kid": "ignored", "use": "sig"}
    assert thumbprint(ec) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(okp) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_ath_known_answer_r05() -> None:
    assert ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@pytest.fixture(scope="module")
def fx() -> Fixtures:
    return Fixtures(issuer="https://as.test", audience="https://api.test")


def test_default_proof_is_exact_rfc9449(fx: Fixtures) -> None:
    token = fx.access_token(bind="jkt")
    proof = fx.proof(htu="https://api.test/resource", token=token)
    header = json.loads(b64u_decode(proof.split(".")[0]))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256" and set(header["jwk"]) == {"kty", "crv", "x", "y"}
    assert len(b64u_decode(proof.split(".")[2])) == 64  # raw R‖S (RFC 7518 §3.4)
    obj = jws.deserialize_compact(proof, ECKey.import_key(header["jwk"]), algorithms=["ES256"])
    claims = json.loads(obj.payload)
    assert set(claims) == {"jti", "htm", "htu", "iat", "ath"} and claims["ath"] == ath(token)
    assert json.loads(b64u_decode(token.split(".")[1]))["cnf"]["jkt"] == thumbprint(header["jwk"])


def test_access_tokens_verify_with_the_served_jwks(fx: Fixtures) -> None:
    from joserfc.jwk import KeySet
    keys = KeySet.import_key_set(fx.jwks(rotated=True))
    for signer in ("as-1", "as-2"):
        tok = fx.access_token(signer=signer)
        assert jws.deserialize_compact(tok, keys, algorithms=["RS256"]).headers()["kid"] == fx.kid(signer)


def test_certificates_share_key_but_not_thumbprint(fx: Fixtures) -> None:
    assert fx.cert1.public_key() == fx.cert1b.public_key()
    assert len({fx.cert_thumb(c) for c in (fx.cert1, fx.cert1b, fx.cert2)}) == 3


# ---------------------------------------------------------------- report


def _r(outcome: str, level: str) -> Result:
    return Result("DPOP-RS-07a", "RS", "9449 §4.3(4)", level, "t", "401", "200", outcome, "why")


def test_exit_code_and_junit() -> None:
    assert exit_code([_r("fail", "S")]) == 0 and exit_code([_r("fail", "S")], strict=True) == 1
    assert exit_code([_r("fail", "M"), _r("pass", "M")]) == 1
    root = ET.fromstring(to_junit([_r("fail", "M"), _r("skip", "P")]))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("skipped") == "1"
