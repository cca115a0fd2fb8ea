"""Spec §2.2 and §2.3: DPoP at the token endpoint (RFC 9449 §4.3, §5, §8), through tokenguard's core."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tokenguard.core.jwk import public_jwk, thumbprint
from tokenguard.core.nonce import AS_LABEL, RS_LABEL, NonceIssuer

from .conftest import ISS, Idp, decode_jwt

MTLS = "https://mtls.as.test"


def _bad_proofs(idp: Idp, k1: dict[str, Any], k2: dict[str, Any]) -> dict[str, str]:
    """TOK-AS-04: one defect at a time."""
    import base64
    import json


    def unsigned(header: dict[str, Any], claims: dict[str, Any], sig: str = "") -> str:
        enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{enc(header)}.{enc(claims)}.{sig}"

    good = idp.proof(k1)
    head, payload, sig = good.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    claims = {"jti": "x1", "htm": "POST", "htu": ISS + "/token", "iat": int(time.time())}
    import hashlib
    import hmac

    hs_header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    signing_input = f"{enc(hs_header)}.{enc(claims)}"
    mac = base64.urlsafe_b64encode(hmac.new(b"secret", signing_input.encode(), hashlib.sha256).digest())
    from joserfc import jwk as jose_jwk
    from joserfc import jws

    def signed(header: dict[str, Any], body: dict[str, Any], key: dict[str, Any] = k1) -> str:
        return jws.serialize_compact(header, json.dumps(body).encode(), jose_jwk.import_key(key), algorithms=["ES256"])

    pub = public_jwk(k1)
    pub.pop("kid", None)
    pub.pop("alg", None)
    return {
        "bad signature": f"{head}.{payload}.{flipped}",
        "signed by another key": signed({"typ": "dpop+jwt", "alg": "ES256", "jwk": pub}, claims, k2),
        "alg none": unsigned({"typ": "dpop+jwt", "alg": "none", "jwk": pub}, claims),
        "HS256": signing_input + "." + mac.rstrip(b"=").decode(),
        "typ wrong": signed({"typ": "JWT", "alg": "ES256", "jwk": pub}, claims),
        "private jwk": signed({"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(k1)}, claims),
        "htm GET": idp.proof(k1, method="GET"),
        "htu other": idp.proof(k1, url=ISS + "/other"),
        "iat +3600": idp.proof(k1, iat=time.time() + 3600),
        "iat -3600": idp.proof(k1, iat=time.time() - 3600),
        "jti missing": signed({"typ": "dpop+jwt", "alg": "ES256", "jwk": pub},
                              {k: v for k, v in claims.items() if k != "jti"}),
        "not a JWT": "abc",
    }


def test_TOK_AS_01_authorization_code_gets_a_dpop_token(idp: Idp, k1: dict) -> None:
    code, verifier = idp.authorize()
    response = idp.code_grant(code, verifier, dpop=idp.proof(k1))
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "DPoP"
    assert response.headers["Cache-Control"] == "no-store"
    assert decode_jwt(response.json["access_token"])[1]["cnf"] == {"jkt": thumbprint(k1)}


def test_TOK_AS_01_client_credentials_gets_a_dpop_token(idp: Idp, k1: dict) -> None:
    response = idp.client_credentials(dpop=idp.proof(k1))
    assert response.status_code == 200
    assert response.json["token_type"] == "DPoP"
    assert response.headers["Cache-Control"] == "no-store"
    assert decode_jwt(response.json["access_token"])[1]["cnf"] == {"jkt": thumbprint(k1)}


def test_TOK_AS_02_no_proof_gives_a_bearer_token(idp: Idp) -> None:
    response = idp.client_credentials()
    assert response.status_code == 200
    assert response.json["token_type"] == "Bearer"
    assert "cnf" not in decode_jwt(response.json["access_token"])[1]


def test_TOK_AS_03_dpop_required_client_without_proof(idp: Idp, k1: dict) -> None:
    response = idp.client_credentials("dpop1")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"
    assert idp.client_credentials("dpop1", dpop=idp.proof(k1)).json["token_type"] == "DPoP"


def test_TOK_AS_04_invalid_proofs(idp: Idp, k1: dict, k2: dict) -> None:
    for name, proof in _bad_proofs(idp, k1, k2).items():
        response = idp.client_credentials(dpop=proof)
        assert response.status_code == 400, name
        assert response.json["error"] == "invalid_dpop_proof", name
        assert "access_token" not in response.json, name
        assert response.headers["Cache-Control"] == "no-store", name


def test_TOK_AS_05_two_dpop_header_fields(idp: Idp, k1: dict) -> None:
    response = idp.client_credentials(dpop=[idp.proof(k1), idp.proof(k1)])
    assert response.status_code == 400
    assert response.json["error"] == "invalid_dpop_proof"


def test_TOK_AS_06_replayed_proof(idp: Idp, k1: dict) -> None:
    proof = idp.proof(k1)
    assert idp.client_credentials(dpop=proof).status_code == 200
    again = idp.client_credentials(dpop=proof)
    assert again.status_code == 400
    assert again.json["error"] == "invalid_dpop_proof"


@pytest.mark.parametrize("kw", [{"iat": -10}, {"iat": 8}, {"nbf": 0, "exp": 300}], ids=["iat-10", "iat+8", "nbf-exp"])
def test_TOK_AS_07_fapi_iat_and_nbf_exp_accepted(idp: Idp, k1: dict, kw: dict[str, int]) -> None:
    now = int(time.time())
    if "iat" in kw:
        proof = idp.proof(k1, iat=now + kw["iat"])
    else:
        proof = idp.proof(k1, extra_claims={"nbf": now, "exp": now + 300})
    assert idp.client_credentials(dpop=proof).status_code == 200


def test_TOK_AS_08_htu_is_the_mtls_alias_actually_called(make_idp: Callable[..., Idp], k1: dict) -> None:
    idp = make_idp(mtls_base=MTLS)
    proxy = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "mtls.as.test"), ("X-Forwarded-Port", "443")]
    data = {"grant_type": "client_credentials"}
    ok = idp.token(data, auth=("conf1", "conf1-secret"), headers=proxy, dpop=idp.proof(k1, url=MTLS + "/token"),
                   base="http://127.0.0.1:9000")
    assert ok.status_code == 200, ok.json
    wrong = idp.token(data, auth=("conf1", "conf1-secret"), headers=proxy, dpop=idp.proof(k1, url=ISS + "/token"),
                      base="http://127.0.0.1:9000")
    assert wrong.status_code == 400
    assert wrong.json["error"] == "invalid_dpop_proof"


def test_TOK_AS_08_forwarded_headers_ignored_from_untrusted_peers(make_idp: Callable[..., Idp], k1: dict) -> None:
    idp = make_idp(mtls_base=MTLS)
    proxy = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "mtls.as.test")]
    response = idp.client.post("/token", base_url="http://as.internal:9000", headers=[
        *proxy, ("DPoP", idp.proof(k1, url=MTLS + "/token"))], data={"grant_type": "client_credentials"},
        auth=("conf1", "conf1-secret"), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 400 and response.json["error"] == "invalid_dpop_proof"


def test_TOK_AS_09_ath_in_a_token_endpoint_proof_is_ignored(idp: Idp, k1: dict) -> None:
    proof = idp.proof(k1, access_token="some-unrelated-token")
    assert idp.client_credentials(dpop=proof).status_code == 200


# -- §2.3 AS nonces --------------------------------------------------------------------------------
@pytest.fixture
def nonce_idp(make_idp: Callable[..., Idp]) -> Idp:
    return make_idp(dpop_nonce=True)


def test_NONCE_AS_01_proof_without_nonce(nonce_idp: Idp, k1: dict) -> None:
    response = nonce_idp.client_credentials(dpop=nonce_idp.proof(k1))
    assert response.status_code == 400
    assert response.json["error"] == "use_dpop_nonce"
    assert response.json["error_description"]
    assert len(response.headers.getlist("DPoP-Nonce")) == 1
    assert response.headers["Cache-Control"] == "no-store"


def test_NONCE_AS_02_retry_with_the_nonce(nonce_idp: Idp, k1: dict) -> None:
    nonce = nonce_idp.client_credentials(dpop=nonce_idp.proof(k1)).headers["DPoP-Nonce"]
    response = nonce_idp.client_credentials(dpop=nonce_idp.proof(k1, nonce=nonce))
    assert response.status_code == 200
    assert response.json["token_type"] == "DPoP"
    assert len(response.headers.getlist("DPoP-Nonce")) <= 1


def test_NONCE_AS_03_made_up_stale_or_rs_nonce(nonce_idp: Idp, k1: dict) -> None:
    secret = (nonce_idp.state / "dpop-nonce.secret").read_bytes()
    stale = NonceIssuer(secret, AS_LABEL, clock=lambda: time.time() - 3600).issue()
    rs_nonce = NonceIssuer(secret, RS_LABEL).issue()  # R-08: RS nonces are not valid at the AS
    for nonce in ("not-a-server-nonce", stale, rs_nonce):
        response = nonce_idp.client_credentials(dpop=nonce_idp.proof(k1, nonce=nonce))
        assert response.status_code == 400
        assert response.json["error"] == "use_dpop_nonce"
        fresh = response.headers.getlist("DPoP-Nonce")
        assert len(fresh) == 1 and fresh[0] != nonce


def test_NONCE_AS_as_nonce_is_refused_by_an_rs_nonce_issuer(nonce_idp: Idp, k1: dict) -> None:
    """R-08, the other direction (NONCE-RS-04): an AS nonce does not validate as an RS nonce."""
    secret = (nonce_idp.state / "dpop-nonce.secret").read_bytes()
    as_nonce = nonce_idp.client_credentials(dpop=nonce_idp.proof(k1)).headers["DPoP-Nonce"]
    assert not NonceIssuer(secret, RS_LABEL).is_valid(as_nonce)
