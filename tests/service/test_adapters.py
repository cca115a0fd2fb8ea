"""The auth endpoint behind each proxy convention: what is trusted, from whom, and the URL rebuilt."""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from joserfc import jwk
from support import self_signed_cert

from tokenguard.core.b64 import sha256_b64url
from tokenguard.core.dpop import create_proof

NGINX = {"X-Original-Method": "GET", "X-Original-URI": "/resource?x=1", "X-Forwarded-Proto": "https",
         "X-Forwarded-Host": "api.test", "X-Forwarded-Port": "443"}


def dpop_headers(token: str, key: dict[str, Any], url: str = "https://api.test/resource",
                 method: str = "GET") -> dict[str, str]:
    return {"Authorization": "DPoP " + token, "DPoP": create_proof(key, htm=method, htu=url, access_token=token)}


def test_nginx_headers_rebuild_the_external_url(make_client, issuer) -> None:
    client = make_client()
    key = jwk.generate_key("EC", "P-256", private=True)
    token = issuer.token(cnf={"jkt": key.thumbprint()})
    ok = client.get("/auth", headers={**NGINX, **dpop_headers(token, key.as_dict(private=True))})
    assert ok.status_code == 200
    assert ok.headers["X-Auth-Binding"] == "dpop" and ok.headers["X-Auth-Jkt"] == key.thumbprint()
    assert ok.headers["X-Auth-Subject"] == "u1"


def test_htu_of_the_subrequest_itself_is_refused(make_client, issuer) -> None:
    """DPOP-RS-29(b): htu naming tokenguard's own /auth URL does not match the external URL."""
    client = make_client()
    key = jwk.generate_key("EC", "P-256", private=True)
    token = issuer.token(cnf={"jkt": key.thumbprint()})
    bad = client.get("/auth", headers={**NGINX, **dpop_headers(token, key.as_dict(private=True),
                                                                   url="http://localhost/auth")})
    assert bad.status_code == 401
    assert bad.headers["X-Auth-Error"] == "dpop_htu_mismatch"
    assert 'error="invalid_dpop_proof"' in bad.headers["WWW-Authenticate"]


def test_forwarded_headers_from_untrusted_peer_are_ignored(make_client, issuer) -> None:
    """Forged X-Original-* from outside trusted_proxies: judged as the request arrived, so htu fails."""
    client = make_client()
    key = jwk.generate_key("EC", "P-256", private=True)
    token = issuer.token(cnf={"jkt": key.thumbprint()})
    response = client.get("/auth", headers={**NGINX, **dpop_headers(token, key.as_dict(private=True))},
                          environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 401
    assert response.headers["X-Auth-Error"] == "dpop_htu_mismatch"


def test_certificate_header_from_untrusted_peer_is_ignored(make_client, issuer) -> None:
    cert = self_signed_cert()
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    token = issuer.token(cnf={"x5t#S256": sha256_b64url(cert.public_bytes(serialization.Encoding.DER))})
    client = make_client()
    from urllib.parse import quote

    headers = {**NGINX, "Authorization": "Bearer " + token, "X-SSL-Client-Cert": quote(pem)}
    assert client.get("/auth", headers=headers).status_code == 200
    denied = client.get("/auth", headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert denied.status_code == 401 and denied.headers["X-Auth-Error"] == "cert_missing"


def test_caddy_and_traefik_forwarded_method_and_uri(make_client, issuer) -> None:
    client = make_client({"mtls": {"cert_header": "X-Forwarded-Tls-Client-Cert", "cert_format": "base64-der"}})
    key = jwk.generate_key("EC", "P-256", private=True)
    token = issuer.token(cnf={"jkt": key.thumbprint()}, scope="write")
    headers = {"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/write?a=b", "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "api.test:8443",
               **dpop_headers(token, key.as_dict(private=True), url="https://api.test:8443/write", method="POST")}
    assert client.get("/auth", headers=headers).status_code == 200


def test_traefik_certificate_as_base64_der(make_client, issuer) -> None:
    import base64
    from urllib.parse import quote

    cert = self_signed_cert()
    der = cert.public_bytes(serialization.Encoding.DER)
    token = issuer.token(cnf={"x5t#S256": sha256_b64url(der)})
    client = make_client({"mtls": {"cert_header": "X-Forwarded-Tls-Client-Cert", "cert_format": "base64-der"}})
    headers = {**NGINX, "Authorization": "Bearer " + token,
               "X-Forwarded-Tls-Client-Cert": quote(base64.b64encode(der).decode())}
    ok = client.get("/auth", headers=headers)
    assert ok.status_code == 200 and ok.headers["X-Auth-X5t-S256"] == sha256_b64url(der)


def test_envoy_ext_authz_path_prefix_and_xfcc(make_client, issuer) -> None:
    from urllib.parse import quote

    cert = self_signed_cert()
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    token = issuer.token(cnf={"x5t#S256": sha256_b64url(der)})
    client = make_client({"mtls": {"cert_header": "X-Forwarded-Client-Cert", "cert_format": "xfcc"},
                          "server": {"public_url": "https://api.test"}})
    xfcc = f'By=spiffe://api;Hash=abc;Cert="{quote(pem)}";Subject="CN=client"'
    ok = client.get("/envoy/resource?x=1", headers={"Authorization": "Bearer " + token,
                                                    "X-Forwarded-Client-Cert": xfcc, "Host": "api.test"})
    assert ok.status_code == 200, ok.headers.get("X-Auth-Error")
    key = jwk.generate_key("EC", "P-256", private=True)
    dtoken = issuer.token(cnf={"jkt": key.thumbprint()})
    post = client.post("/envoy/resource", headers=dpop_headers(dtoken, key.as_dict(private=True),
                                                               url="https://api.test/resource", method="POST"))
    assert post.status_code == 200, post.headers.get("X-Auth-Error")


def test_public_url_overrides_forwarded_host(make_client, issuer) -> None:
    client = make_client({"server": {"public_url": "https://public.example"}})
    key = jwk.generate_key("EC", "P-256", private=True)
    token = issuer.token(cnf={"jkt": key.thumbprint()})
    headers = {**NGINX, **dpop_headers(token, key.as_dict(private=True), url="https://public.example/resource")}
    assert client.get("/auth", headers=headers).status_code == 200
    headers = {**NGINX, **dpop_headers(token, key.as_dict(private=True))}
    assert client.get("/auth", headers=headers).headers["X-Auth-Error"] == "dpop_htu_mismatch"


def test_folded_duplicate_dpop_headers_are_refused(make_client, issuer) -> None:
    """R-12: a WSGI server folds two DPoP fields into one comma-joined value."""
    client = make_client()
    key = jwk.generate_key("EC", "P-256", private=True).as_dict(private=True)
    from joserfc.jwk import ECKey

    token = issuer.token(cnf={"jkt": ECKey.import_key(key).thumbprint()})
    one = create_proof(key, htm="GET", htu="https://api.test/resource", access_token=token)
    two = create_proof(key, htm="GET", htu="https://api.test/resource", access_token=token)
    response = client.get("/auth", headers={**NGINX, "Authorization": "DPoP " + token, "DPoP": f"{one},{two}"})
    assert response.status_code == 401 and response.headers["X-Auth-Error"] == "dpop_multiple_proofs"


def test_health_ready_metrics(make_client, issuer) -> None:
    client = make_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["ready"] is True
    client.get("/auth", headers=NGINX)
    body = client.get("/metrics").get_data(as_text=True)
    assert 'tokenguard_decisions_total{reason="no_credentials",result="deny"}' in body
    assert "tokenguard_decision_seconds_bucket" in body


def test_claim_headers_and_claim_policy(make_client, issuer) -> None:
    client = make_client({"route": [{"path": "/resource", "binding": "any", "scopes": ["read"],
                                     "claims": [{"path": "realm_access.roles", "contains": "admin"}],
                                     "headers": {"X-User-Email": "email"}}]})
    ok = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + issuer.token(
        realm_access={"roles": ["admin"]}, email="a@example.com")})
    assert ok.status_code == 200 and ok.headers["X-User-Email"] == "a@example.com"
    denied = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + issuer.token(
        realm_access={"roles": ["user"]})})
    assert denied.status_code == 403 and denied.headers["X-Auth-Error"] == "claim_mismatch"


def test_unmatched_route_is_denied_by_default(make_client, issuer) -> None:
    client = make_client({"route": [{"path": "/resource", "binding": "any"}]})
    other = {**NGINX, "X-Original-URI": "/admin", "Authorization": "Bearer " + issuer.token()}
    response = client.get("/auth", headers=other)
    assert response.status_code == 403 and response.headers["X-Auth-Error"] == "no_route"


def test_jwks_never_fetched_fails_closed(make_client, issuer) -> None:
    client = make_client({"server": {"fail_status": 500}})
    issuer.down = True
    response = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + issuer.token()})
    assert response.status_code == 500 and response.headers["X-Auth-Error"] == "jwks_unavailable"
    assert client.get("/readyz").status_code == 503


def test_expired_token_is_logged_without_the_token(make_client, issuer, caplog) -> None:
    client = make_client({"server": {"log_decisions": True}})
    token = issuer.token(exp=int(time.time()) - 3600)
    import logging

    logger = logging.getLogger("tokenguard.decision")
    logger.addHandler(caplog.handler)
    try:
        response = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + token})
    finally:
        logger.removeHandler(caplog.handler)
    assert response.status_code == 401 and response.headers["X-Auth-Error"] == "token_expired"
    text = caplog.text
    assert '"reason":"token_expired"' in text
    assert token not in text and token.split(".")[1] not in text


def test_unforeseen_error_fails_closed_without_leaking(make_client, issuer, caplog) -> None:
    """A bug deep in the pipeline is a 500 with a reason code, and its log names only the error type."""
    import logging

    client = make_client()
    verifier = client.application.extensions["tokenguard"]
    token = issuer.token()

    def broken(value: str, *_trace: Any) -> Any:
        raise ValueError(f"boom {value}")  # a message that quotes the token

    verifier.tokens.validate = broken
    logger = logging.getLogger("tokenguard.core.verifier")  # tokenguard's loggers do not propagate to root
    logger.addHandler(caplog.handler)
    try:
        response = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + token})
    finally:
        logger.removeHandler(caplog.handler)
    assert response.status_code == 500 and response.headers["X-Auth-Error"] == "internal_error"
    assert "ValueError" in caplog.text
    assert token not in caplog.text and "boom" not in caplog.text


def test_one_of_and_regex_claim_rules(make_client, issuer) -> None:
    client = make_client({"route": [{"path": "/resource", "binding": "any",
                                     "claims": [{"path": "tier", "one_of": ["gold", "silver"]},
                                                {"path": "email", "regex": r"[^@]+@example\.com"}]}]})
    ok = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + issuer.token(
        tier="gold", email="a@example.com")})
    assert ok.status_code == 200
    for claims in ({"tier": "bronze", "email": "a@example.com"}, {"tier": "gold", "email": "a@example.org"}):
        denied = client.get("/auth", headers={**NGINX, "Authorization": "Bearer " + issuer.token(**claims)})
        assert denied.status_code == 403 and denied.headers["X-Auth-Error"] == "claim_mismatch"
