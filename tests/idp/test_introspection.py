"""Spec §2.6: RFC 7662 introspection (R-16) and RFC 7009 revocation."""

from __future__ import annotations

from collections.abc import Callable

from support import Clock

from tokenguard.core.jwk import thumbprint

from .conftest import Idp, decode_jwt, escaped_pem

RS = ("rs1", "rs1-secret")


def test_INT_AS_01_dpop_token(idp: Idp, k1: dict) -> None:
    token = idp.client_credentials(dpop=idp.proof(k1)).json["access_token"]
    response = idp.post("/introspect", {"token": token}, auth=RS)
    assert response.status_code == 200
    body = response.json
    assert body["active"] is True
    assert body["token_type"] == "DPoP"
    assert body["cnf"] == {"jkt": thumbprint(k1)}
    claims = decode_jwt(token)[1]
    for name in ("iss", "sub", "client_id", "exp", "iat", "jti", "scope", "aud"):
        assert body[name] == claims[name], name
    assert response.headers["Cache-Control"] == "no-store"


def test_INT_AS_01_opaque_dpop_token(idp: Idp, k1: dict) -> None:
    response = idp.client_credentials("opaque1", dpop=idp.proof(k1))
    token = response.json["access_token"]
    assert token.count(".") == 0
    body = idp.post("/introspect", {"token": token}, auth=RS).json
    assert body["active"] is True and body["token_type"] == "DPoP" and body["cnf"] == {"jkt": thumbprint(k1)}


def test_INT_AS_02_certificate_bound_token(idp: Idp) -> None:
    cert = (idp.state / "demo" / "mtls1.crt").read_bytes()
    response = idp.token({"grant_type": "client_credentials", "client_id": "mtls1"},
                         headers=[("X-SSL-Client-Cert", escaped_pem(cert))])
    assert response.status_code == 200, response.json
    token = response.json["access_token"]
    body = idp.post("/introspect", {"token": token}, auth=RS).json
    assert body["cnf"] == decode_jwt(token)[1]["cnf"]
    assert "x5t#S256" in body["cnf"] and body["token_type"] == "Bearer"


def test_INT_AS_03_expired_revoked_unknown(make_idp: Callable[..., Idp]) -> None:
    clock = Clock()
    idp = make_idp(clock=clock)
    token = idp.client_credentials().json["access_token"]
    assert idp.post("/introspect", {"token": token}, auth=RS).json["active"] is True
    clock.advance(601)
    expired = idp.post("/introspect", {"token": token}, auth=RS)
    assert expired.status_code == 200 and expired.json == {"active": False}
    idp = make_idp(state_dir=str(idp.state) + "-2")
    token = idp.client_credentials().json["access_token"]
    assert idp.post("/revoke", {"token": token}, auth=("conf1", "conf1-secret")).status_code == 200
    assert idp.post("/introspect", {"token": token}, auth=RS).json == {"active": False}
    assert idp.post("/introspect", {"token": "no-such-token"}, auth=RS).json == {"active": False}


def test_INT_AS_04a_no_rs_authentication(idp: Idp) -> None:
    token = idp.client_credentials().json["access_token"]
    response = idp.post("/introspect", {"token": token})
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_INT_AS_04b_no_token_parameter(idp: Idp) -> None:
    response = idp.post("/introspect", {}, auth=RS)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_INT_AS_04c_no_dpop_header_from_the_rs(idp: Idp, k1: dict) -> None:
    token = idp.client_credentials(dpop=idp.proof(k1)).json["access_token"]
    assert idp.post("/introspect", {"token": token}, auth=RS).json["active"] is True


def test_other_clients_cannot_introspect_foreign_tokens(idp: Idp) -> None:
    token = idp.client_credentials().json["access_token"]
    assert idp.post("/introspect", {"token": token}, auth=("dpop1", "dpop1-secret")).json == {"active": False}
    assert idp.post("/introspect", {"token": token}, auth=("conf1", "conf1-secret")).json["active"] is True


def test_revocation_rfc7009(idp: Idp) -> None:
    token = idp.client_credentials().json["access_token"]
    foreign = idp.post("/revoke", {"token": token}, auth=("dpop1", "dpop1-secret"))
    assert foreign.status_code == 400 and foreign.json["error"] == "invalid_grant"
    assert idp.post("/introspect", {"token": token}, auth=RS).json["active"] is True
    assert idp.post("/revoke", {"token": "unknown"}, auth=("conf1", "conf1-secret")).status_code == 200
    assert idp.post("/revoke", {"token": token}, auth=("conf1", "wrong")).status_code == 401


def test_revoking_a_refresh_token_ends_the_grant(idp: Idp) -> None:
    code, verifier = idp.authorize("conf1")
    body = idp.code_grant(code, verifier, client_id="conf1", auth=("conf1", "conf1-secret")).json
    response = idp.post("/revoke", {"token": body["refresh_token"], "token_type_hint": "refresh_token"},
                        auth=("conf1", "conf1-secret"))
    assert response.status_code == 200
    assert idp.post("/introspect", {"token": body["access_token"]}, auth=RS).json == {"active": False}
