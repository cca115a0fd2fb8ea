"""Spec §1.4 BIND-RS-01…10: token binding and downgrade (RFC 9449 §4.3(12), §6, §7; R-11)."""

from __future__ import annotations

import pytest

from tokenguard.core.request import AuthRequest, ClientCertificate

from .helpers import (
    AUD,
    ISS,
    T0,
    URL,
    Env,
    assert_400star,
    assert_allowed,
    assert_D,
    cert_der,
    challenges,
    public_key_jwk,
    sha256_b64u,
    thumb,
    x5t,
)


def test_BIND_RS_01_ath_of_other_token(env: Env) -> None:
    d = env.decide(env.b_dpop(env.proof({"ath": sha256_b64u(env.at_b.encode())})))
    assert_D(d, "invalid_dpop_proof", "dpop_ath_mismatch")


@pytest.mark.parametrize("ath", ["é" * 43, "\u2603", 43, None])
def test_BIND_RS_01b_ath_not_an_ascii_string_is_a_mismatch(env: Env, ath: object) -> None:
    """A non-ASCII ``ath`` made ``hmac.compare_digest`` raise TypeError: the request failed closed as an
    internal error (500) instead of the RFC answer."""
    d = env.decide(env.b_dpop(env.proof({"ath": ath})))
    assert_D(d, "invalid_dpop_proof", "dpop_ath_mismatch")


def test_BIND_RS_03_proof_by_other_key(env: Env) -> None:
    d = env.decide(env.b_dpop(env.proof(key=env.keys.K2)))
    assert_D(d, "invalid_token", "dpop_key_mismatch")
    assert challenges(d)["dpop"].get("error_description") == "Invalid DPoP key binding"


def _invalid_token_on_either(d) -> None:
    assert d.status == 401 and not d.allow
    chs = challenges(d)
    assert "dpop" in chs and "bearer" in chs
    assert "invalid_token" in (chs["bearer"].get("error"), chs["dpop"].get("error"))
    assert d.error == "invalid_token"


def test_BIND_RS_04_dpop_token_as_bearer(env: Env) -> None:
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {env.at_d}",)))
    _invalid_token_on_either(d)
    assert d.reason == "dpop_token_as_bearer"


def test_BIND_RS_05_dpop_token_as_bearer_with_proof(env: Env) -> None:
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {env.at_d}",), dpop=(env.proof(),)))
    _invalid_token_on_either(d)
    assert d.reason == "dpop_token_as_bearer"


@pytest.mark.parametrize("mode", [True, False], ids=["BIND-RS-06-auth_request", "BIND-RS-06-direct"])
def test_BIND_RS_06_dpop_scheme_without_proof(env: Env, mode: bool) -> None:
    env.build(auth_request_mode=mode)
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"DPoP {env.at_d}",)))
    assert_400star(d, mode, ("DPoP",), "dpop_proof_missing")
    assert challenges(d)["bearer"].get("error") is None


def test_BIND_RS_07_dpop_scheme_with_unbound_token(env: Env) -> None:
    d = env.decide(env.b_dpop(env.proof(token=env.at_b), token=env.at_b))
    assert_D(d, "invalid_token", "token_not_dpop_bound")


@pytest.mark.parametrize("mode", [True, False], ids=["BIND-RS-08-auth_request", "BIND-RS-08-direct"])
def test_BIND_RS_08_bearer_with_dpop_header(env: Env, mode: bool) -> None:
    env.build(auth_request_mode=mode)
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {env.at_b}",),
                                       dpop=(env.proof(token=env.at_b),)))
    assert_400star(d, mode, ("Bearer",), "dpop_with_bearer")
    assert challenges(d)["dpop"].get("error") is None


@pytest.mark.parametrize("scheme", ["Bearer", "DPoP"])
@pytest.mark.parametrize("case", ["a-jkt-and-x5t", "b-unknown-cnf-jwk"], ids=lambda c: f"BIND-RS-09-{c}")
def test_BIND_RS_09_unusable_cnf(env: Env, case: str, scheme: str) -> None:
    cnf = ({"jkt": env.jkt1, "x5t#S256": x5t(env.keys.CERT1)} if case.startswith("a")
           else {"jwk": public_key_jwk(env.keys.K1)})
    token = env.token({"cnf": cnf})
    if scheme == "DPoP":
        request = env.b_dpop(env.proof(token=token), token=token)
    else:
        request = AuthRequest.for_url("GET", URL, authorization=(f"Bearer {token}",))
    d = env.decide(request)
    assert d.status == 401 and d.error == "invalid_token"
    assert challenges(d)[scheme.lower()].get("error") == "invalid_token"
    assert d.reason == ("token_double_binding" if case.startswith("a") else "token_unknown_cnf")


def test_BIND_RS_09c_non_ascii_certificate_thumbprint_is_malformed(env: Env) -> None:
    """A ``cnf`` ``x5t#S256`` with non-ASCII characters made ``hmac.compare_digest`` raise TypeError (an
    internal error, 500) when the presented certificate was compared with it."""
    token = env.token({"cnf": {"x5t#S256": "é" * 43}})
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {token}",),
                                       client_cert=ClientCertificate(cert_der(env.keys.CERT1))))
    assert d.status == 401 and d.error == "invalid_token" and d.reason == "token_bad_cnf"


OPAQUE = "opaque-dpop-token-1"


def _introspected(env: Env, token_type: str) -> None:
    env.introspection.answers[OPAQUE] = {
        "active": True, "token_type": token_type, "cnf": {"jkt": env.jkt1}, "iss": ISS, "aud": AUD,
        "sub": "u1", "client_id": "c1", "scope": "read", "exp": T0 + 600}


@pytest.mark.parametrize("token_type", ["DPoP", "Bearer"], ids=["BIND-RS-10-a", "BIND-RS-10-c"])
def test_BIND_RS_10_opaque_dpop_token(env: Env, token_type: str) -> None:
    _introspected(env, token_type)
    d = env.decide(env.b_dpop(env.proof(token=OPAQUE), token=OPAQUE))
    assert_allowed(d)
    assert ("X-Auth-Jkt", env.jkt1) in d.headers
    url, form, auth = env.introspection.calls[0]
    assert form["token"] == OPAQUE and auth == ("rs1", "rs1-secret")


@pytest.mark.parametrize("token_type", ["DPoP", "Bearer"], ids=["BIND-RS-10-b", "BIND-RS-10-c-as-bearer"])
def test_BIND_RS_10_opaque_dpop_token_as_bearer(env: Env, token_type: str) -> None:
    _introspected(env, token_type)
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {OPAQUE}",)))
    _invalid_token_on_either(d)
    assert d.reason == "dpop_token_as_bearer"


def test_BIND_RS_10_opaque_proof_by_other_key(env: Env) -> None:
    _introspected(env, "DPoP")
    d = env.decide(env.b_dpop(env.proof(token=OPAQUE, key=env.keys.K2), token=OPAQUE))
    assert_D(d, "invalid_token", "dpop_key_mismatch")
    assert thumb(public_key_jwk(env.keys.K2)) != env.jkt1
