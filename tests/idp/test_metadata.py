"""Spec §2.1: RFC 8414 metadata, RFC 9449 §5.1, RFC 8705 §3.3/§5, R-17."""

from __future__ import annotations

from collections.abc import Callable

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from .conftest import ISS, Idp, decode_jwt

MTLS = "https://mtls.as.test"


def test_META_AS_01_required_fields_and_mtls_aliases(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(mtls_base=MTLS)
    response = idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    doc = response.json
    for name in ("issuer", "token_endpoint", "jwks_uri", "response_types_supported", "grant_types_supported",
                 "token_endpoint_auth_methods_supported", "introspection_endpoint",
                 "introspection_endpoint_auth_methods_supported", "authorization_endpoint",
                 "revocation_endpoint", "userinfo_endpoint", "pushed_authorization_request_endpoint"):
        assert name in doc, name
    assert {"tls_client_auth", "self_signed_tls_client_auth", "private_key_jwt", "client_secret_basic",
            "client_secret_post"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["token_endpoint"] == ISS + "/token"  # the top-level endpoints remain
    aliases = doc["mtls_endpoint_aliases"]
    assert aliases["token_endpoint"] == MTLS + "/token"
    assert aliases["introspection_endpoint"] == MTLS + "/introspect"
    assert all(url.startswith("https://") for url in aliases.values())
    AuthorizationServerMetadata(doc).validate()  # authlib's own RFC 8414 validation


def test_META_AS_01_openid_configuration_is_the_same_document(idp: Idp) -> None:
    a = idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS).json
    b = idp.client.get("/.well-known/openid-configuration", base_url=ISS).json
    assert a == b


def test_META_AS_02_dpop_algs_equal_what_the_token_endpoint_accepts(make_idp: Callable[..., Idp],
                                                                    k1: dict) -> None:
    idp = make_idp(dpop_algs=("ES256", "PS256", "EdDSA"))
    algs = idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS).json[
        "dpop_signing_alg_values_supported"]
    assert algs == ["ES256", "PS256", "EdDSA"]
    assert not any(a == "none" or a.startswith("HS") for a in algs)
    assert idp.app.extensions["idp_mock"].dpop.verifier.algs == tuple(algs)
    ok = idp.client_credentials(dpop=idp.proof(k1))
    assert ok.status_code == 200
    from idp_mock.keys import generate_jwk

    rs = generate_jwk("RS256")
    refused = idp.client_credentials(dpop=idp.proof(rs, alg="RS256"))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_dpop_proof"


def test_META_AS_03_certificate_bound_tokens_is_a_json_boolean(idp: Idp) -> None:
    raw = idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS).get_data(as_text=True)
    assert '"tls_client_certificate_bound_access_tokens": true' in raw.replace('":true', '": true')
    assert idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS).json[
        "tls_client_certificate_bound_access_tokens"] is True


def test_META_AS_04a_issuer_byte_identical(idp: Idp) -> None:
    doc = idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS).json
    assert doc["issuer"] == "https://as.test"
    token = idp.client_credentials().json["access_token"]
    assert decode_jwt(token)[1]["iss"] == doc["issuer"]


def test_META_AS_04b_issuer_with_path_inserts_the_well_known_suffix(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(issuer="https://as.test/t1", mtls_base=MTLS)
    response = idp.client.get("/.well-known/oauth-authorization-server/t1", base_url="https://as.test")
    assert response.status_code == 200
    doc = response.json
    assert doc["issuer"] == "https://as.test/t1"
    assert doc["token_endpoint"] == "https://as.test/t1/token"
    assert doc["mtls_endpoint_aliases"]["token_endpoint"] == MTLS + "/t1/token"
    assert idp.client.get("/.well-known/oauth-authorization-server", base_url="https://as.test").status_code == 404
    oidc = idp.client.get("/t1/.well-known/openid-configuration", base_url="https://as.test").json
    assert oidc["issuer"] == "https://as.test/t1"
    response = idp.token({"grant_type": "client_credentials"}, auth=("conf1", "conf1-secret"), path="/t1/token",
                         base="https://as.test")
    assert response.status_code == 200
    assert decode_jwt(response.json["access_token"])[1]["iss"] == "https://as.test/t1"  # META-AS-04(c)
    jwks = idp.client.get("/t1/jwks", base_url="https://as.test")
    assert jwks.status_code == 200 and jwks.json["keys"]


def test_mtls_aliases_can_be_disabled(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(mtls_base="")
    assert "mtls_endpoint_aliases" not in idp.client.get("/.well-known/oauth-authorization-server", base_url=ISS).json
