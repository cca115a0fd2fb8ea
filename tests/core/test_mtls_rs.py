"""Spec §1.5 MTLS-RS-01…09: certificate-bound tokens (RFC 8705 §3). MTLS-RS-10 runs through nginx."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from tokenguard.core.request import AuthRequest

from .helpers import AUD, ISS, T0, URL, Env, assert_allowed, assert_B, cert_der, cert_pem, escaped_pem, x5t


def test_MTLS_RS_01_baseline(env: Env) -> None:
    d = env.decide(env.b_mtls())
    assert_allowed(d)
    assert d.binding == "mtls"
    assert ("X-Auth-X5t-S256", x5t(env.keys.CERT1)) in d.headers


@pytest.mark.parametrize("value", [None, "", "(null)", "  "],
                         ids=["MTLS-RS-02-a-absent", "MTLS-RS-02-b-empty", "MTLS-RS-02-c-null",
                              "MTLS-RS-02-d-verify-NONE"])
def test_MTLS_RS_02_no_certificate(env: Env, value: str | None) -> None:
    assert_B(env.decide(env.b_mtls(value)), "invalid_token", "cert_missing")


@pytest.mark.parametrize("which", ["CERT2", "CERT1b"],
                         ids=["MTLS-RS-03-a-other-cert", "MTLS-RS-03-b-reissued-same-key"])
def test_MTLS_RS_03_wrong_certificate(env: Env, which: str) -> None:
    cert = getattr(env.keys, which)
    assert_B(env.decide(env.b_mtls(escaped_pem(cert))), "invalid_token", "cert_mismatch")


def _formats(env: Env) -> dict[str, tuple[str, str]]:
    pem = cert_pem(env.keys.CERT1)
    lines = pem.strip().split("\n")
    return {
        "MTLS-RS-04-a-escaped-pem": ("escaped-pem", escaped_pem(env.keys.CERT1)),
        "MTLS-RS-04-b-pem-spaces": ("escaped-pem", pem.strip().replace("\n", " ")),
        "MTLS-RS-04-c-legacy-tab-pem": ("escaped-pem", "\n\t".join(lines) + "\n"),
        "MTLS-RS-04-d-base64-der": ("base64-der", base64.b64encode(cert_der(env.keys.CERT1)).decode()),
        "MTLS-RS-04-xfcc": ("xfcc", f'Hash=abc;Cert="{escaped_pem(env.keys.CERT1)}";Subject="CN=client-1"'),
        "MTLS-RS-04-rfc9440": ("rfc9440", f":{base64.b64encode(cert_der(env.keys.CERT1)).decode()}:"),
    }


@pytest.mark.parametrize("case", ["MTLS-RS-04-a-escaped-pem", "MTLS-RS-04-b-pem-spaces", "MTLS-RS-04-c-legacy-tab-pem",
                                  "MTLS-RS-04-d-base64-der", "MTLS-RS-04-xfcc", "MTLS-RS-04-rfc9440"])
def test_MTLS_RS_04_header_formats(env: Env, case: str) -> None:
    fmt, value = _formats(env)[case]
    env.build(cert_format=fmt)
    assert_allowed(env.decide(env.b_mtls(value)))


@pytest.mark.parametrize("value", ["-----BEGIN CERTIFICATE-----garbage",
                                   "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                                   "%ZZ%", "\x00\xff"], ids=lambda v: "MTLS-RS-05-garbage")
def test_MTLS_RS_05_garbage_certificate(env: Env, value: str) -> None:
    assert_B(env.decide(env.b_mtls(value)), "invalid_token", "cert_malformed")


def test_MTLS_RS_07_self_signed_chain_not_validated(env: Env) -> None:
    # X-SSL-Client-Verify: FAILED:self signed certificate — the core never gates on it (RFC 8705 §6.2)
    assert_allowed(env.decide(env.b_mtls()))


def test_MTLS_RS_08_a_mtls_token_with_dpop_scheme(env: Env) -> None:
    request = env.b_dpop(env.proof(token=env.at_m), token=env.at_m)
    request = dataclasses.replace(request, client_cert=env.cert(escaped_pem(env.keys.CERT1)))
    d = env.decide(request)
    assert d.status == 401 and d.error == "invalid_token" and d.reason == "mtls_token_as_dpop"


def test_MTLS_RS_08_b_bearer_token_with_any_cert(env: Env) -> None:
    request = AuthRequest.for_url("GET", URL, authorization=(f"Bearer {env.at_b}",),
                                  client_cert=env.cert("garbage-is-ignored"))
    d = env.decide(request)
    assert_allowed(d)
    assert d.binding == "bearer"


OPAQUE = "opaque-mtls-token-1"


@pytest.mark.parametrize("presented,ok", [("CERT1", True), ("CERT2", False), (None, False)],
                         ids=["MTLS-RS-09-cert1", "MTLS-RS-09-cert2", "MTLS-RS-09-no-cert"])
def test_MTLS_RS_09_opaque_certificate_bound(env: Env, presented: str | None, ok: bool) -> None:
    env.introspection.answers[OPAQUE] = {"active": True, "cnf": {"x5t#S256": x5t(env.keys.CERT1)}, "iss": ISS,
                                         "aud": AUD, "sub": "u1", "client_id": "c1", "scope": "read",
                                         "exp": T0 + 600}
    value = escaped_pem(getattr(env.keys, presented)) if presented else None
    d = env.decide(env.b_mtls(value, token=OPAQUE))
    if ok:
        assert_allowed(d)
    else:
        assert_B(d, "invalid_token", "cert_mismatch" if presented else "cert_missing")
