"""Spec §2.7: RFC 8705 client authentication (§2.1 PKI, §2.2 self-signed) and certificate-bound
tokens (§3), the certificate arriving from the trusted TLS proxy in ``X-SSL-Client-Cert`` (R-15)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from idp_mock.client_auth import dn_matches
from tokenguard.core.bindings.mtls import x5t_s256

from .conftest import Idp, decode_jwt, escaped_pem


def issue(state: Path, subject: str, *, san: list[x509.GeneralName] | None = None, self_signed: bool = False,
          days: int = 30) -> bytes:
    """A client certificate from the demo CA (or self-signed), PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string(subject)
    if self_signed:
        issuer_name, issuer_key = name, key
    else:
        ca = x509.load_pem_x509_certificate((state / "demo" / "ca.crt").read_bytes())
        issuer_name = ca.subject
        issuer_key = serialization.load_pem_private_key((state / "demo" / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def cert_request(idp: Idp, client_id: str | None, pem: bytes | None, **kw: object) -> object:
    data = {"grant_type": "client_credentials"}
    if client_id:
        data["client_id"] = client_id
    headers = [("X-SSL-Client-Cert", escaped_pem(pem))] if pem else []
    return idp.token(data, headers=headers, **kw)  # type: ignore[arg-type]


CLIENTS_TOML = """
[[client]]
client_id = "dn-reordered"
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "c=US, O=IDP-MOCK   demo, CN=mtls1"
tls_client_certificate_bound_access_tokens = true

[[client]]
client_id = "san-dns"
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_dns = "MTLS1.client.test"

[[client]]
client_id = "san-uri"
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_uri = "spiffe://demo/workload"

[[client]]
client_id = "san-ip"
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_ip = "10.1.2.3"

[[client]]
client_id = "san-email"
token_endpoint_auth_method = "tls_client_auth"
tls_client_auth_san_email = "svc@Example.TEST"

[[client]]
client_id = "cb1"
client_secret = "cb1-secret"
tls_client_certificate_bound_access_tokens = true
"""


@pytest.fixture
def mtls_idp(make_idp: Callable[..., Idp], tmp_path: Path) -> Idp:
    config = tmp_path / "idp.toml"
    config.write_text(CLIENTS_TOML)
    return make_idp(config_file=config)


def test_MTLS_AS_01_subject_dn_order_insensitive(mtls_idp: Idp) -> None:
    pem = (mtls_idp.state / "demo" / "mtls1.crt").read_bytes()
    for client_id in ("mtls1", "dn-reordered", "san-dns"):
        response = cert_request(mtls_idp, client_id, pem)
        assert response.status_code == 200, (client_id, response.json)  # type: ignore[attr-defined]
    assert dn_matches("O=idp-mock demo,CN=mtls1,C=US", x509.load_pem_x509_certificate(pem).subject)
    assert not dn_matches("CN=mtls1,O=idp-mock demo", x509.load_pem_x509_certificate(pem).subject)


def test_MTLS_AS_01_san_uri_ip_email(mtls_idp: Idp) -> None:
    state = mtls_idp.state
    cases = {"san-uri": x509.UniformResourceIdentifier("spiffe://demo/workload"),
             "san-ip": x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
             "san-email": x509.RFC822Name("svc@example.test")}
    for client_id, name in cases.items():
        pem = issue(state, "CN=workload", san=[name])
        assert cert_request(mtls_idp, client_id, pem).status_code == 200, client_id  # type: ignore[attr-defined]
        other = issue(state, "CN=workload", san=[x509.DNSName("other.test")])
        assert cert_request(mtls_idp, client_id, other).status_code == 401, client_id  # type: ignore[attr-defined]


def test_MTLS_AS_02_no_cert_wrong_cert_untrusted_cert_other_client(mtls_idp: Idp) -> None:
    state = mtls_idp.state
    mtls1 = (state / "demo" / "mtls1.crt").read_bytes()
    cases = {
        "a no cert": ("mtls1", None),
        "b other subject": ("mtls1", issue(state, "CN=someone-else,O=idp-mock demo,C=US")),
        "c not chaining to a trusted CA": ("mtls1", issue(state, "CN=mtls1,O=idp-mock demo,C=US", self_signed=True)),
        "d client 2 with client 1's cert": ("san-uri", mtls1),
    }
    for name, (client_id, pem) in cases.items():
        response = cert_request(mtls_idp, client_id, pem)
        assert response.status_code == 401, name  # type: ignore[attr-defined]
        assert response.json["error"] == "invalid_client", name  # type: ignore[attr-defined]
        assert response.headers["Cache-Control"] == "no-store"  # type: ignore[attr-defined]


def test_MTLS_AS_02_garbage_certificate_header(idp: Idp) -> None:
    response = idp.token({"grant_type": "client_credentials", "client_id": "mtls1"},
                         headers=[("X-SSL-Client-Cert", "-----BEGIN CERTIFICATE-----garbage")])
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


def test_MTLS_AS_02_certificate_header_ignored_from_untrusted_peer(idp: Idp) -> None:
    pem = (idp.state / "demo" / "mtls1.crt").read_bytes()
    response = idp.client.post("/token", base_url=idp.issuer, data={"grant_type": "client_credentials",
                                                                    "client_id": "mtls1"},
                               headers=[("X-SSL-Client-Cert", escaped_pem(pem))],
                               environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


def test_MTLS_AS_03_self_signed_registered_and_unregistered(idp: Idp) -> None:
    pem = (idp.state / "demo" / "selfsigned1.crt").read_bytes()
    ok = cert_request(idp, "selfsigned1", pem)
    assert ok.status_code == 200, ok.json  # type: ignore[attr-defined]
    claims = decode_jwt(ok.json["access_token"])[1]  # type: ignore[attr-defined]
    assert claims["cnf"] == {"x5t#S256": x5t_s256(der(pem))}
    other = issue(idp.state, "CN=selfsigned1,O=idp-mock demo", self_signed=True)  # same subject, not registered
    refused = cert_request(idp, "selfsigned1", other)
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"  # type: ignore[attr-defined]


def test_MTLS_AS_04_mtls_without_client_id(idp: Idp) -> None:
    pem = (idp.state / "demo" / "mtls1.crt").read_bytes()
    response = cert_request(idp, None, pem)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert response.json["error"] == "invalid_request"  # type: ignore[attr-defined]


def test_MTLS_AS_05a_certificate_bound_token(idp: Idp) -> None:
    pem = (idp.state / "demo" / "mtls1.crt").read_bytes()
    response = cert_request(idp, "mtls1", pem)
    assert response.status_code == 200  # type: ignore[attr-defined]
    body = response.json  # type: ignore[attr-defined]
    assert body["token_type"] == "Bearer"
    assert decode_jwt(body["access_token"])[1]["cnf"] == {"x5t#S256": x5t_s256(der(pem))}


def test_MTLS_AS_05b_certificate_bound_client_without_cert(mtls_idp: Idp) -> None:
    response = mtls_idp.client_credentials("cb1")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    pem = issue(mtls_idp.state, "CN=anything", self_signed=True)
    ok = mtls_idp.client_credentials("cb1", headers=[("X-SSL-Client-Cert", escaped_pem(pem))])
    assert decode_jwt(ok.json["access_token"])[1]["cnf"] == {"x5t#S256": x5t_s256(der(pem))}


def test_MTLS_AS_06_cert_binding_client_with_a_dpop_proof(idp: Idp, k1: dict) -> None:
    pem = (idp.state / "demo" / "mtls1.crt").read_bytes()
    response = cert_request(idp, "mtls1", pem, dpop=idp.proof(k1))
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert response.json["error"] == "invalid_request"  # type: ignore[attr-defined]
    assert "access_token" not in response.json  # type: ignore[attr-defined]


def test_public_client_refresh_token_bound_to_its_certificate(idp: Idp) -> None:
    """RFC 8705 §4: a public client's refresh token is bound to the certificate it presented."""
    pem = issue(idp.state, "CN=app", self_signed=True)
    cert = [("X-SSL-Client-Cert", escaped_pem(pem))]
    code, verifier = idp.authorize()
    first = idp.code_grant(code, verifier, headers=cert)
    assert first.status_code == 200
    rt = {"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"], "client_id": "pub1"}
    assert idp.token(rt, headers=cert).status_code == 200
    other = issue(idp.state, "CN=app", self_signed=True)
    refused = idp.token(rt, headers=[("X-SSL-Client-Cert", escaped_pem(other))])
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
