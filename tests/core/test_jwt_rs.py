"""Spec §1.6 JWT-RS-01…13: RFC 9068 access-token validation, JWKS cache and introspection."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable

import pytest

from tokenguard.core.request import AuthRequest

from .helpers import (
    AUD,
    DROP,
    ISS,
    T0,
    URL,
    Env,
    assert_401_none,
    assert_allowed,
    assert_B,
    assert_D,
    b64u,
    b64u_json,
    header_values,
)

REJECT: dict[str, tuple[Callable[[Env], str], str]] = {
    "JWT-RS-01-a-expired-hour": (lambda env: env.token({"exp": T0 - 3600}), "token_expired"),
    "JWT-RS-01-b-no-exp": (lambda env: env.token({"exp": DROP}), "token_missing_claim"),
    "JWT-RS-02-b-nbf-hour-ahead": (lambda env: env.token({"nbf": T0 + 3600}), "token_not_yet_valid"),
    "JWT-RS-02-exp-just-beyond-leeway": (lambda env: env.token({"exp": T0 - 61}), "token_expired"),
    "JWT-RS-03-a-evil-issuer": (lambda env: env.token({"iss": "https://evil.test"}), "token_unknown_issuer"),
    "JWT-RS-03-b-issuer-trailing-slash": (lambda env: env.token({"iss": "https://as.test/"}), "token_unknown_issuer"),
    "JWT-RS-04-a-other-audience": (lambda env: env.token({"aud": "https://other.test"}), "token_wrong_audience"),
    "JWT-RS-04-b-no-audience": (lambda env: env.token({"aud": DROP}), "token_missing_claim"),
    "JWT-RS-05-a-typ-JWT": (lambda env: env.token(header={"typ": "JWT"}), "token_bad_typ"),
    "JWT-RS-05-b-no-typ": (lambda env: env.token(header={"typ": DROP}), "token_bad_typ"),
    "JWT-RS-05-c-id-token": (lambda env: env.token({"aud": "c1", "nonce": "n", "auth_time": T0},
                                                   header={"typ": "JWT"}), "token_bad_typ"),
    "JWT-RS-06-alg-none": (lambda env: b64u_json({"typ": "at+jwt", "alg": "none", "kid": "as-1"}) + "."
                           + env.token().split(".")[1] + ".", "token_bad_alg"),
    "JWT-RS-06-HS256-with-public-key": (lambda env: _hs256_with_public_key(env), "token_bad_alg"),
    "JWT-RS-08-a-payload-altered": (lambda env: _alter_payload(env), "token_bad_signature"),
    "JWT-RS-08-b-attacker-key-kid-as-1": (lambda env: env.token(key=env.keys.ATTACKER), "token_bad_signature"),
    "JWT-RS-08-c-embedded-jwk-jku-x5u-ignored": (lambda env: env.token(key=env.keys.ATTACKER, header={
        "jwk": env.as_public(env.keys.ATTACKER, "as-1"), "jku": "https://evil.test/jwks",
        "x5u": "https://evil.test/cert"}), "token_bad_signature"),
    "JWT-RS-08-d-unknown-crit": (lambda env: env.token(header={"crit": ["exp2"], "exp2": 1}), "token_crit"),
    "JWT-RS-12-a-two-segments": (lambda env: env.token().rsplit(".", 1)[0], "token_malformed"),
    "JWT-RS-12-b-non-base64url-segment": (lambda env: (lambda p: f"{p[0]}.{p[1][:10]}+{p[1][10:]}.{p[2]}")(
        env.token().split(".")), "token_malformed"),
    "JWT-RS-12-c-jwe": (lambda env: b64u_json({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "at+jwt"})
                        + ".a2V5.aXY.Y2lwaGVy.dGFn", "token_encrypted"),
    **{f"JWT-RS-12-d-no-{claim}": (lambda env, c=claim: env.token({c: DROP}), "token_missing_claim")
       for claim in ("sub", "client_id", "iat", "jti")},
    "JWT-RS-12-exp-string": (lambda env: env.token({"exp": str(T0 + 600)}), "token_malformed"),
}


def _hs256_with_public_key(env: Env) -> str:
    """The classic confusion attack: HMAC keyed with the AS's public key PEM."""
    head = b64u_json({"typ": "at+jwt", "alg": "HS256", "kid": "as-1"})
    payload = env.token().split(".")[1]
    secret = env.keys.AS1.as_pem(private=False)
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64u(mac)}"


def _alter_payload(env: Env) -> str:
    head, _, sig = env.token().split(".")
    claims = {"iss": ISS, "aud": AUD, "sub": "admin", "client_id": "c1", "iat": T0, "exp": T0 + 600,
              "jti": str(uuid.uuid4()), "scope": "read"}
    return f"{head}.{b64u_json(claims)}.{sig}"


@pytest.mark.parametrize("case_id", list(REJECT), ids=list(REJECT))
def test_jwt_rejected(env: Env, case_id: str) -> None:
    make, reason = REJECT[case_id]
    d = env.decide(env.b_bearer(make(env)))
    assert_B(d, "invalid_token", reason)


ACCEPT: dict[str, Callable[[Env], str]] = {
    "JWT-RS-02-a-exp-inside-leeway": lambda env: env.token({"exp": T0 - 30}),
    "JWT-RS-02-nbf-inside-leeway": lambda env: env.token({"nbf": T0 + 30}),
    "JWT-RS-04-c-audience-list": lambda env: env.token({"aud": ["x", "https://api.test"]}),
    "JWT-RS-05-d-typ-application-at+jwt": lambda env: env.token(header={"typ": "application/at+jwt"}),
    "JWT-RS-05-e-typ-at+JWT": lambda env: env.token(header={"typ": "at+JWT"}),
    "JWT-RS-scope-as-list": lambda env: env.token({"scope": ["read", "x"]}),
}


@pytest.mark.parametrize("case_id", list(ACCEPT), ids=list(ACCEPT))
def test_jwt_accepted(env: Env, case_id: str) -> None:
    d = env.decide(env.b_bearer(ACCEPT[case_id](env)))
    assert_allowed(d)
    assert ("X-Auth-Subject", "u1") in d.headers and ("X-Auth-Client-Id", "c1") in d.headers
    assert ("X-Auth-Binding", "bearer") in d.headers


def test_JWT_RS_dpop_bound_token_failure_uses_dpop_challenge(env: Env) -> None:
    token = env.token({"cnf": {"jkt": env.jkt1}, "exp": T0 - 3600})
    d = env.decide(env.b_dpop(env.proof(token=token), token=token))
    assert_D(d, "invalid_token", "token_expired")


def test_JWT_RS_expiry_rechecked_on_cached_token(env: Env) -> None:
    token = env.token({"exp": T0 + 10})
    assert_allowed(env.decide(env.b_bearer(token)))
    env.clock.advance(10 + 60)
    assert_B(env.decide(env.b_bearer(token)), "invalid_token", "token_expired")


def test_JWT_RS_09_key_rotation_one_refetch(env: Env) -> None:
    assert_allowed(env.decide(env.b_bearer()))
    assert env.jwks.calls == 1
    env.jwks.keys = [env.as_public(env.keys.AS1, "as-1"), env.as_public(env.keys.AS2, "as-2")]
    env.clock.advance(1)  # rotation right after start-up: the kid cool-down has not been used yet
    token = env.token(header={"kid": "as-2"}, key=env.keys.AS2)
    assert_allowed(env.decide(env.b_bearer(token)))
    assert env.jwks.calls == 2
    assert_allowed(env.decide(env.b_bearer(env.token(header={"kid": "as-2"}, key=env.keys.AS2))))
    assert_allowed(env.decide(env.b_bearer(env.token())))
    assert env.jwks.calls == 2


def test_JWT_RS_10_a_unknown_kid(env: Env) -> None:
    assert_allowed(env.decide(env.b_bearer()))
    env.clock.advance(env.jwks_cache.cooldown)
    d = env.decide(env.b_bearer(env.token(header={"kid": "nope"})))
    assert_B(d, "invalid_token", "token_unknown_kid")
    assert env.jwks.calls == 2  # one refresh, the kid still unknown


def test_JWT_RS_10_b_flood_of_unknown_kids(env: Env) -> None:
    assert_allowed(env.decide(env.b_bearer()))
    before = env.jwks.calls
    for _ in range(20):
        env.clock.advance(0.5)
        d = env.decide(env.b_bearer(env.token(header={"kid": f"random-{uuid.uuid4()}"})))
        assert_B(d, "invalid_token", "token_unknown_kid")
    assert env.jwks.calls - before <= 1


def test_JWT_RS_jwks_down_after_keys_cached(env: Env) -> None:
    assert_allowed(env.decide(env.b_bearer()))
    env.jwks.down = True
    env.clock.advance(env.jwks_cache.ttl + 1)  # cache stale: a refresh is attempted and fails
    assert_allowed(env.decide(env.b_bearer(env.token())))
    assert env.jwks.calls == 2
    assert env.jwks_cache.last_error


@pytest.mark.parametrize("fail_status", [500, 401], ids=["JWT-RS-13-b-jwks-500", "JWT-RS-13-b-jwks-401"])
def test_JWT_RS_13_b_jwks_never_fetched(env: Env, fail_status: int) -> None:
    env.jwks.down = True
    env.build(fail_status=fail_status)
    d = env.decide(env.b_bearer())
    assert not d.allow and d.status == fail_status and d.reason == "jwks_unavailable"
    assert header_values(d, "X-Auth-Error") == ["jwks_unavailable"]
    if fail_status == 401:
        assert_401_none(d, "jwks_unavailable")


def test_JWT_RS_13_a_introspection_inactive(env: Env) -> None:
    d = env.decide(env.b_bearer("opaque-unknown-token"))
    assert_B(d, "invalid_token", "token_inactive")
    assert env.introspection.calls


@pytest.mark.parametrize("fail_status", [500, 401],
                         ids=["JWT-RS-13-b-introspection-500", "JWT-RS-13-b-introspection-401"])
def test_JWT_RS_13_b_introspection_unreachable(env: Env, fail_status: int) -> None:
    env.introspection.down = True
    env.build(fail_status=fail_status)
    d = env.decide(env.b_bearer("opaque-token"))
    assert not d.allow and d.status == fail_status and d.reason == "introspection_unavailable"


def test_JWT_RS_13_introspection_cache_bounded_by_exp(env: Env) -> None:
    env.introspection.answers["opaque-short"] = {"active": True, "iss": ISS, "sub": "u1", "client_id": "c1",
                                                 "scope": "read", "exp": T0 + 5}
    assert_allowed(env.decide(env.b_bearer("opaque-short")))
    assert_allowed(env.decide(env.b_bearer("opaque-short")))
    assert len(env.introspection.calls) == 1
    env.clock.advance(6)
    env.introspection.answers["opaque-short"] = {"active": False}
    assert_B(env.decide(env.b_bearer("opaque-short")), "invalid_token", "token_inactive")
    assert len(env.introspection.calls) == 2


def test_JWT_RS_introspection_other_audience(env: Env) -> None:
    env.introspection.answers["opaque-aud"] = {"active": True, "aud": "https://other.test", "sub": "u1",
                                               "client_id": "c1", "scope": "read", "exp": T0 + 600}
    assert_B(env.decide(env.b_bearer("opaque-aud")), "invalid_token", "token_wrong_audience")


def test_JWT_RS_no_route_denied(env: Env) -> None:
    d = env.decide(AuthRequest.for_url("DELETE", URL, authorization=(f"Bearer {env.at_b}",)))
    assert not d.allow and d.status == 403 and d.reason == "no_route"
