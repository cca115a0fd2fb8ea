"""Spec §2.4 (RFC 9449 §10, §10.1) and §2.5 refresh tokens; PKCE S256 and PAR (RFC 9126)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tokenguard.core.jwk import thumbprint

from .conftest import ISS, REDIRECT, Idp, decode_jwt, pkce

PAR_URL = ISS + "/par"


def test_JKT_AS_01_dpop_jkt_with_the_same_key(idp: Idp, k1: dict) -> None:
    code, verifier = idp.authorize(dpop_jkt=thumbprint(k1))
    response = idp.code_grant(code, verifier, dpop=idp.proof(k1))
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "DPoP"
    assert decode_jwt(response.json["access_token"])[1]["cnf"]["jkt"] == thumbprint(k1)


def test_JKT_AS_02_dpop_jkt_with_another_key(idp: Idp, k1: dict, k2: dict) -> None:
    code, verifier = idp.authorize(dpop_jkt=thumbprint(k1))
    response = idp.code_grant(code, verifier, dpop=idp.proof(k2))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_JKT_AS_03_dpop_jkt_without_a_proof(idp: Idp, k1: dict) -> None:
    code, verifier = idp.authorize(dpop_jkt=thumbprint(k1))
    response = idp.code_grant(code, verifier)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def _par(idp: Idp, dpop: str | None = None, **extra: str) -> tuple[int, dict, str]:
    verifier, challenge = pkce()
    data = {"response_type": "code", "client_id": "pub1", "redirect_uri": REDIRECT, "scope": "openid read",
            "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    response = idp.token(data, dpop=dpop, path="/par")
    return response.status_code, response.json, verifier


def _redeem_par(idp: Idp, request_uri: str) -> str:
    response = idp.client.get("/authorize", base_url=ISS, query_string={"client_id": "pub1",
                                                                      "request_uri": request_uri})
    assert response.status_code == 302, response.get_data(as_text=True)
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


def test_JKT_AS_04_par_with_dpop_binds_the_code(idp: Idp, k1: dict) -> None:
    status, body, verifier = _par(idp, dpop=idp.proof(k1, url=PAR_URL))
    assert status == 201, body
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:") and body["expires_in"] > 0
    code = _redeem_par(idp, body["request_uri"])
    response = idp.code_grant(code, verifier, dpop=idp.proof(k1))
    assert response.status_code == 200
    assert decode_jwt(response.json["access_token"])[1]["cnf"]["jkt"] == thumbprint(k1)


def test_JKT_AS_04a_par_with_k1_then_token_proof_by_k2(idp: Idp, k1: dict, k2: dict) -> None:
    status, body, verifier = _par(idp, dpop=idp.proof(k1, url=PAR_URL))
    assert status == 201
    code = _redeem_par(idp, body["request_uri"])
    response = idp.code_grant(code, verifier, dpop=idp.proof(k2))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_JKT_AS_04b_par_proof_and_dpop_jkt_disagree(idp: Idp, k1: dict, k2: dict) -> None:
    status, body, _ = _par(idp, dpop=idp.proof(k1, url=PAR_URL), dpop_jkt=thumbprint(k2))
    assert status == 400
    assert body["error"] in ("invalid_request", "invalid_dpop_proof")


def test_par_request_uri_is_single_use_and_client_bound(idp: Idp) -> None:
    status, body, _ = _par(idp)
    assert status == 201
    wrong = idp.client.get("/authorize", base_url=ISS, query_string={"client_id": "conf1",
                                                                   "request_uri": body["request_uri"]})
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_request"
    status, body, _ = _par(idp)
    _redeem_par(idp, body["request_uri"])
    again = idp.client.get("/authorize", base_url=ISS, query_string={"client_id": "pub1",
                                                                   "request_uri": body["request_uri"]})
    assert again.status_code == 400


def test_par_rejects_an_invalid_proof_and_bad_requests(idp: Idp, k1: dict) -> None:
    status, body, _ = _par(idp, dpop=idp.proof(k1, url=ISS + "/token"))
    assert status == 400 and body["error"] == "invalid_dpop_proof"
    status, body, _ = _par(idp, redirect_uri="https://evil.test/cb")
    assert status == 400 and body["error"] == "invalid_request"


def test_pkce_is_required_and_s256_only(idp: Idp) -> None:
    base = {"response_type": "code", "client_id": "pub1", "redirect_uri": REDIRECT, "state": "s"}
    for extra in ({}, {"code_challenge": "a" * 43, "code_challenge_method": "plain"}, {"code_challenge": "a" * 43}):
        response = idp.client.get("/authorize", base_url=ISS, query_string={**base, **extra})
        assert response.status_code == 302
        assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]
    code, _verifier = idp.authorize()
    wrong = idp.code_grant(code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"


def test_code_is_single_use_and_reuse_revokes_the_tokens(idp: Idp) -> None:
    code, verifier = idp.authorize()
    first = idp.code_grant(code, verifier)
    assert first.status_code == 200
    second = idp.code_grant(code, verifier)
    assert second.status_code == 400 and second.json["error"] == "invalid_grant"
    answer = idp.post("/introspect", {"token": first.json["access_token"]}, auth=("rs1", "rs1-secret"))
    assert answer.json == {"active": False}


def test_login_hint_picks_another_user_and_unknown_redirect_is_not_followed(idp: Idp) -> None:
    code, verifier = idp.authorize(login_hint="bob")
    token = idp.code_grant(code, verifier).json["access_token"]
    assert decode_jwt(token)[1]["sub"] == "bob"
    verifier, challenge = pkce()
    response = idp.client.get("/authorize", base_url=ISS, query_string={
        "response_type": "code", "client_id": "pub1", "redirect_uri": "https://evil.test/cb",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    assert response.status_code == 400 and "Location" not in response.headers


# -- §2.5 refresh tokens --------------------------------------------------------------------------
def _public_rt(idp: Idp, key: dict) -> str:
    code, verifier = idp.authorize()
    response = idp.code_grant(code, verifier, dpop=idp.proof(key))
    assert response.status_code == 200
    return str(response.json["refresh_token"])


def test_RT_AS_01_public_refresh_with_the_bound_key(idp: Idp, k1: dict) -> None:
    rt = _public_rt(idp, k1)
    response = idp.token({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "pub1"},
                         dpop=idp.proof(k1))
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "DPoP"
    assert decode_jwt(response.json["access_token"])[1]["cnf"] == {"jkt": thumbprint(k1)}
    again = idp.token({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "pub1"}, dpop=idp.proof(k1))
    assert again.status_code == 200  # bound, so not rotated


def test_RT_AS_02_public_refresh_with_another_key(idp: Idp, k1: dict, k2: dict) -> None:
    rt = _public_rt(idp, k1)
    response = idp.token({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "pub1"},
                         dpop=idp.proof(k2))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_RT_AS_03_public_refresh_without_a_proof(idp: Idp, k1: dict) -> None:
    rt = _public_rt(idp, k1)
    response = idp.token({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "pub1"})
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_RT_AS_04_confidential_refresh_is_not_key_bound_and_rotates(idp: Idp, k1: dict, k2: dict) -> None:
    code, verifier = idp.authorize("conf1")
    first = idp.code_grant(code, verifier, client_id="conf1", auth=("conf1", "conf1-secret"), dpop=idp.proof(k1))
    assert first.status_code == 200
    rt = first.json["refresh_token"]
    response = idp.token({"grant_type": "refresh_token", "refresh_token": rt}, auth=("conf1", "conf1-secret"),
                         dpop=idp.proof(k2))
    assert response.status_code == 200, response.json
    assert decode_jwt(response.json["access_token"])[1]["cnf"] == {"jkt": thumbprint(k2)}
    new_rt = response.json["refresh_token"]
    assert new_rt != rt
    info = idp.post("/introspect", {"token": new_rt}, auth=("rs1", "rs1-secret")).json
    assert info["active"] is True and "cnf" not in info
    reused = idp.token({"grant_type": "refresh_token", "refresh_token": rt}, auth=("conf1", "conf1-secret"))
    assert reused.status_code == 400 and reused.json["error"] == "invalid_grant"
    # reuse of a rotated refresh token ends the whole grant
    assert idp.post("/introspect", {"token": new_rt}, auth=("rs1", "rs1-secret")).json == {"active": False}


def test_RT_AS_04_dpop_required_client_refreshing_without_proof(idp: Idp, k1: dict) -> None:
    code, verifier = idp.authorize("dpop1")
    first = idp.code_grant(code, verifier, client_id="dpop1", auth=("dpop1", "dpop1-secret"), dpop=idp.proof(k1))
    assert first.status_code == 200
    response = idp.token({"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
                         auth=("dpop1", "dpop1-secret"))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_refresh_token_of_another_client(idp: Idp) -> None:
    code, verifier = idp.authorize("conf1")
    rt = idp.code_grant(code, verifier, client_id="conf1", auth=("conf1", "conf1-secret")).json["refresh_token"]
    response = idp.token({"grant_type": "refresh_token", "refresh_token": rt}, auth=("dpop1", "dpop1-secret"))
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
