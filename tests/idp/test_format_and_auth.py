"""Spec §2.8 (RFC 9068 token format, RFC 6749 §5.2 error hygiene) and the other client auth methods."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

from joserfc import jwk as jose_jwk
from joserfc import jwt

from .conftest import ISS, TOKEN_URL, Idp, decode_jwt

ERROR_CHARS = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")


def test_FMT_AS_01_rfc9068_access_token(idp: Idp) -> None:
    token = idp.client_credentials(scope="read write").json["access_token"]
    header, claims = decode_jwt(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] in ("RS256", "PS256", "ES256", "EdDSA")
    kids = [k["kid"] for k in idp.client.get("/jwks", base_url=ISS).json["keys"]]
    assert header["kid"] in kids
    for name in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"):
        assert name in claims, name
    assert claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == 600


def test_FMT_AS_01_tokenguard_core_accepts_issued_tokens(idp: Idp, k1: dict) -> None:
    """The verifier tokenguard runs validates what the IdP issues, with keys from its jwks_uri."""
    from tokenguard.core.access_token import AccessTokenValidator, Issuer
    from tokenguard.core.jwks import JwksCache

    jwks = idp.client.get("/jwks", base_url=ISS).json
    validator = AccessTokenValidator([Issuer(ISS, jwks=JwksCache(ISS, jwks_uri=ISS + "/jwks",
                                                                 fetch=lambda url: jwks))],
                                     audiences=["https://localhost:8000"])
    token = idp.client_credentials(dpop=idp.proof(k1)).json["access_token"]
    assert validator.validate(token).cnf["jkt"]


def test_FMT_AS_02a_wrong_basic_secret(idp: Idp) -> None:
    response = idp.client_credentials(secret="wrong")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"


def test_FMT_AS_02b_errors_are_json_no_store_and_safe(idp: Idp, k1: dict) -> None:
    cases = [
        ({"grant_type": "password", "username": "a", "password": "b"}, ("conf1", "conf1-secret")),
        ({"grant_type": "client_credentials", "scope": "admin"}, ("conf1", "conf1-secret")),
        ({}, ("conf1", "conf1-secret")),
        ({"grant_type": "authorization_code", "code": "nope", "code_verifier": "x" * 43}, ("conf1", "conf1-secret")),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, ("conf1", "conf1-secret")),
        ({"grant_type": "client_credentials", "resource": "not a uri"}, ("conf1", "conf1-secret")),
        ({"grant_type": "client_credentials"}, ("nobody", "x")),
        ({"grant_type": "client_credentials", "client_secret": "conf1-secret"}, ("conf1", "conf1-secret")),
        ({"grant_type": "client_credentials", "client_id": "pub1"}, None),
    ]
    for data, auth in cases:
        response = idp.token(data, auth=auth, dpop=None)
        assert response.status_code in (400, 401), data
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json
        assert ERROR_CHARS.match(body["error"]) and ERROR_CHARS.match(body.get("error_description", ""))
    duplicated = idp.client.post("/token", base_url=ISS, data="grant_type=client_credentials&scope=a&scope=b",
                                 content_type="application/x-www-form-urlencoded", auth=("conf1", "conf1-secret"))
    assert duplicated.status_code == 400 and duplicated.json["error"] == "invalid_request"
    in_query = idp.client.post("/token?grant_type=client_credentials", base_url=ISS, auth=("conf1", "conf1-secret"))
    assert in_query.status_code == 400 and in_query.json["error"] == "invalid_request"


def test_never_a_500_on_garbage(idp: Idp) -> None:
    garbage = ["", "a", "a.b.c", "eyJ.eyJ.x", "\x00", "é" * 10, "x" * 10000]
    for value in garbage:
        for path in ("/token", "/introspect", "/revoke", "/par", "/userinfo"):
            response = idp.client.post(path, base_url=ISS, data={"grant_type": value, "token": value,
                                                                 "client_id": value, "client_assertion": value,
                                                                 "client_assertion_type": value},
                                       headers=[("DPoP", value[:500] or "x"), ("Authorization", "DPoP " + value[:200]),
                                                ("X-SSL-Client-Cert", value[:500])])
            assert response.status_code < 500, (path, value[:20], response.get_data(as_text=True)[:200])
            assert response.mimetype == "application/json"
    for path in ("/nope", "/authorize?client_id=%00", "/authorize?response_type=code&client_id=zzz"):
        response = idp.client.get(path, base_url=ISS)
        assert response.status_code < 500 and response.mimetype == "application/json"
    assert idp.client.get("/token", base_url=ISS).status_code == 405


def test_client_secret_post(idp: Idp) -> None:
    response = idp.token({"grant_type": "client_credentials", "client_id": "conf1", "client_secret": "conf1-secret"})
    assert response.status_code == 200
    wrong = idp.token({"grant_type": "client_credentials", "client_id": "conf1", "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.json["error"] == "invalid_client"


def _assertion(idp: Idp, aud: str = TOKEN_URL, **claims: object) -> str:
    key = jose_jwk.import_key(json.loads((idp.state / "demo" / "jwt1.jwk").read_text()))
    now = int(time.time())
    body = {"iss": "jwt1", "sub": "jwt1", "aud": aud, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    body.update(claims)
    return jwt.encode({"alg": "ES256", "kid": key.kid}, body, key)


def _pkjwt(idp: Idp, assertion: str, **extra: str) -> object:
    return idp.token({"grant_type": "client_credentials", "client_assertion": assertion,
                      "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", **extra})


def test_private_key_jwt(idp: Idp, k1: dict) -> None:
    assertion = _assertion(idp)
    ok = _pkjwt(idp, assertion)
    assert ok.status_code == 200, ok.json  # type: ignore[attr-defined]
    replay = _pkjwt(idp, assertion)
    assert replay.status_code == 401 and replay.json["error"] == "invalid_client"  # type: ignore[attr-defined]
    assert _pkjwt(idp, _assertion(idp, aud=ISS)).status_code == 200  # type: ignore[attr-defined]
    for bad in (_assertion(idp, aud="https://other.test"), _assertion(idp, exp=int(time.time()) - 600),
                _assertion(idp, iss="conf1"), _assertion(idp, exp=int(time.time()) + 86400)):
        response = _pkjwt(idp, bad)
        assert response.status_code == 401, response.json  # type: ignore[attr-defined]
        assert ERROR_CHARS.match(response.json.get("error_description", ""))  # type: ignore[attr-defined]
    mismatch = _pkjwt(idp, _assertion(idp), client_id="conf1")
    assert mismatch.status_code == 401  # type: ignore[attr-defined]
    forged_key = jose_jwk.ECKey.generate_key("P-256", private=True)
    now = int(time.time())
    forged = jwt.encode({"alg": "ES256"}, {"iss": "jwt1", "sub": "jwt1", "aud": TOKEN_URL, "exp": now + 60,
                                           "jti": "x"}, forged_key)
    assert _pkjwt(idp, forged).status_code == 401  # type: ignore[attr-defined]


def test_public_client_cannot_use_client_credentials_or_skip_auth(idp: Idp) -> None:
    response = idp.token({"grant_type": "client_credentials", "client_id": "pub1"})
    assert response.status_code in (400, 401)
    code, verifier = idp.authorize("conf1")
    no_auth = idp.code_grant(code, verifier, client_id="conf1")
    assert no_auth.status_code == 401 and no_auth.json["error"] == "invalid_client"


def test_resource_parameter_sets_the_audience(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(resources=("https://api.test",))
    token = idp.client_credentials(headers=None).json["access_token"]
    assert decode_jwt(token)[1]["aud"] == "https://localhost:8000"
    response = idp.token({"grant_type": "client_credentials", "resource": "https://api.test"},
                         auth=("conf1", "conf1-secret"))
    assert decode_jwt(response.json["access_token"])[1]["aud"] == "https://api.test"
    refused = idp.token({"grant_type": "client_credentials", "resource": "https://other.test"},
                        auth=("conf1", "conf1-secret"))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_target"
