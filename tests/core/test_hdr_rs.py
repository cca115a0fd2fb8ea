"""Spec §1.1 HDR-RS: Authorization header and scheme handling."""

from __future__ import annotations

import pytest

from tokenguard.core.request import AuthRequest

from .helpers import HTU, URL, Env, assert_400star, assert_401_none, assert_allowed, assert_B


def test_HDR_RS_01_no_credentials(env: Env) -> None:
    d = env.decide(AuthRequest.for_url("GET", URL))
    assert_401_none(d, reason="no_credentials")


@pytest.mark.parametrize("case", ["dpop-lowercase", "BEARER-uppercase", "DpOp-mixed"], ids=lambda c: f"HDR-RS-02-{c}")
def test_HDR_RS_02_scheme_case_insensitive(env: Env, case: str) -> None:
    if case == "BEARER-uppercase":
        request = AuthRequest.for_url("GET", URL, authorization=(f"BEARER {env.at_b}",))
    else:
        word = "dpop" if case == "dpop-lowercase" else "DpOp"
        request = AuthRequest.for_url("GET", URL, authorization=(f"{word} {env.at_d}",), dpop=(env.proof(),))
    d = env.decide(request)
    assert_allowed(d)
    assert d.binding == ("bearer" if case.startswith("BEARER") else "dpop")


@pytest.mark.parametrize("mode", [True, False], ids=["auth_request", "direct"])
@pytest.mark.parametrize("case,scheme,reason", [
    ("a-dpop-no-token", "DPoP", "token_missing"),
    ("b-bearer-empty-token", "Bearer", "token_missing"),
    ("c-token-with-SP", "Bearer", "token_syntax"),
    ("c-token-with-comma", "Bearer", "token_syntax"),
    ("c-token-with-quote", "DPoP", "token_syntax"),
], ids=lambda v: f"HDR-RS-04-{v}" if isinstance(v, str) and v[:2] in ("a-", "b-", "c-") else None)
def test_HDR_RS_04_malformed_token(env: Env, mode: bool, case: str, scheme: str, reason: str | None) -> None:
    env.build(auth_request_mode=mode)
    header = {
        "a-dpop-no-token": "DPoP",
        "b-bearer-empty-token": "Bearer ",
        "c-token-with-SP": f"Bearer {env.at_b[:20]} {env.at_b[20:]}",
        "c-token-with-comma": f"Bearer {env.at_b[:20]},{env.at_b[20:]}",
        "c-token-with-quote": f'DPoP {env.at_d[:20]}"{env.at_d[20:]}',
    }[case]
    dpop = (env.proof(),) if scheme == "DPoP" else ()
    d = env.decide(AuthRequest.for_url("GET", URL, authorization=(header,), dpop=dpop))
    assert_400star(d, mode, (scheme,), reason)


@pytest.mark.parametrize("mode", [True, False], ids=["HDR-RS-05-auth_request", "HDR-RS-05-direct"])
def test_HDR_RS_05_two_authorization_fields(env: Env, mode: bool) -> None:
    env.build(auth_request_mode=mode)
    request = AuthRequest.for_url("GET", URL, authorization=(f"Bearer {env.at_d}", f"DPoP {env.at_d}"),
                          dpop=(env.proof(),))
    d = env.decide(request)
    assert_400star(d, mode, ("Bearer", "DPoP"), "multiple_authorization")


@pytest.mark.parametrize("case", ["a-query-access-token", "b-basic"], ids=lambda c: f"HDR-RS-06-{c}")
def test_HDR_RS_06_unsupported_methods(env: Env, case: str) -> None:
    if case == "a-query-access-token":
        request = AuthRequest.for_url("GET", f"https://api.test/resource?access_token={env.at_b}")
        reason = "token_in_query"
    else:
        request = AuthRequest.for_url("GET", URL, authorization=("Basic dXNlcjpwYXNz",))
        reason = "unsupported_scheme"
    assert_401_none(env.decide(request), reason=reason)


def request_from_headers(method: str, url: str, headers: list[tuple[str, str]]) -> AuthRequest:
    """What a proxy adapter does: collect fields by case-insensitive name (RFC 9110 §5.1)."""
    def values(name: str) -> tuple[str, ...]:
        return tuple(v for n, v in headers if n.lower() == name.lower())

    return AuthRequest.for_url(method, url, authorization=values("Authorization"), dpop=values("DPoP"))


@pytest.mark.parametrize("name", ["DPOP", "dpop", "DPoP"], ids=lambda n: f"HDR-RS-08-{n}")
def test_HDR_RS_08_dpop_header_name_case(env: Env, name: str) -> None:
    request = request_from_headers("GET", URL, [("authorization", f"DPoP {env.at_d}"), (name, env.proof())])
    assert request.dpop  # the field was found whatever its case
    assert_allowed(env.decide(request))


@pytest.mark.parametrize("mode", [True, False], ids=["HDR-RS-05-folded-auth_request", "HDR-RS-05-folded-direct"])
def test_HDR_RS_05_two_fields_folded_into_one(env: Env, mode: bool) -> None:
    """R-12: a WSGI server folds duplicate fields into one value joined with ','."""
    env.build(auth_request_mode=mode)
    request = AuthRequest.for_url("GET", URL, authorization=(f"Bearer {env.at_d}, DPoP {env.at_d}",),
                                  dpop=(env.proof(),))
    assert_400star(env.decide(request), mode, ("Bearer", "DPoP"), "multiple_authorization")


@pytest.mark.parametrize("query", [
    "access_token={t}", "x=1&access_token={t}", "x=1;access_token={t}", "%61ccess_token={t}",
    "ACCESS_TOKEN={t}", "access%5Ftoken={t}", "access_token=", "access_token",
], ids=["plain", "second", "semicolon", "percent-encoded-name", "upper-case", "encoded-underscore", "empty", "bare"])
@pytest.mark.parametrize("scheme", ["Bearer", "DPoP"])
def test_a_token_in_the_query_and_the_header_is_invalid_request(env: Env, query: str, scheme: str) -> None:
    """RFC 6750 §3.1: more than one method -> invalid_request, whatever the route and however the name is
    spelled, so that an upstream that reads ``access_token`` from the query never acts on a second token."""
    url = f"{HTU}?{query.format(t=env.at_b)}"
    if scheme == "Bearer":
        request = AuthRequest.for_url("GET", url, authorization=(f"Bearer {env.at_b}",))
    else:
        request = AuthRequest.for_url("GET", url, authorization=(f"DPoP {env.at_d}",), dpop=(env.proof(),))
    assert_400star(env.decide(request), True, ("Bearer", "DPoP"), "multiple_token_methods")


@pytest.mark.parametrize("query", ["access_tokens=1", "x=access_token", "my_access_token=1", "a=1&b=%2561ccess_token"])
def test_query_parameters_that_only_look_like_access_token_are_not_refused(env: Env, query: str) -> None:
    request = AuthRequest.for_url("GET", f"{HTU}?{query}", authorization=(f"Bearer {env.at_b}",))
    assert_allowed(env.decide(request))


def test_an_oversized_token_is_invalid_token(env: Env) -> None:
    """Over tokenguard's own limit (16 KiB) a token is ``invalid_token`` on the scheme it came with."""
    from tokenguard.core.verifier import MAX_TOKEN_LENGTH

    big = env.token({"pad": "x" * MAX_TOKEN_LENGTH})
    assert_B(env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {big}",))), "invalid_token",
             "token_too_large")
    near = env.token({"pad": "x" * (MAX_TOKEN_LENGTH * 3 // 4 - 1000)})
    assert len(near) <= MAX_TOKEN_LENGTH
    assert_allowed(env.decide(AuthRequest.for_url("GET", URL, authorization=(f"Bearer {near}",))))
