"""Spec §1.7 SCOPE-RS-01…04 (core part): insufficient_scope, authentication before authorization."""

from __future__ import annotations

from tokenguard.core.policy import ClaimRule, Policy, Route
from tokenguard.core.request import AuthRequest

from .helpers import T0, URL, WRITE_URL, Env, assert_403_scope, assert_allowed, assert_B


def test_SCOPE_RS_01_bearer_lacks_scope(env: Env) -> None:
    d = env.decide(AuthRequest.for_url("POST", WRITE_URL, authorization=(f"Bearer {env.at_b}",)))
    assert_403_scope(d, "Bearer", "write")


def test_SCOPE_RS_03_expired_and_lacking_scope(env: Env) -> None:
    token = env.token({"exp": T0 - 3600})
    d = env.decide(AuthRequest.for_url("POST", WRITE_URL, authorization=(f"Bearer {token}",)))
    assert_B(d, "invalid_token", "token_expired")


def test_SCOPE_RS_04_dpop_lacks_scope(env: Env) -> None:
    proof = env.proof({"htm": "POST", "htu": WRITE_URL})
    d = env.decide(AuthRequest.for_url("POST", WRITE_URL, authorization=(f"DPoP {env.at_d}",), dpop=(proof,)))
    assert_403_scope(d, "DPoP", "write")


def test_SCOPE_RS_04_direct_mode_same(env: Env) -> None:
    env.build(auth_request_mode=False)
    proof = env.proof({"htm": "POST", "htu": WRITE_URL})
    d = env.decide(AuthRequest.for_url("POST", WRITE_URL, authorization=(f"DPoP {env.at_d}",), dpop=(proof,)))
    assert_403_scope(d, "DPoP", "write")


def test_SCOPE_claim_rules_and_header_mapping(env: Env) -> None:
    route = Route(name="admin", path="/resource", methods=("GET",), scopes=("read",),
                  claims=(ClaimRule.build("realm_access.roles", "contains", "admin"),),
                  headers=(("X-Roles", "realm_access.roles"),))
    env.build(routes=(route,))
    ok = env.token({"realm_access": {"roles": ["user", "admin"]}})
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {ok}",)))
    assert_allowed(d)
    assert ("X-Roles", "user admin") in d.headers
    user_only = env.token({"realm_access": {"roles": ["user"]}})
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {user_only}",)))
    assert not d.allow and d.status == 403 and d.reason == "claim_mismatch"
    assert env.policy == Policy(routes=(route,))
