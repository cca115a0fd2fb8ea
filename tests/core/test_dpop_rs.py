"""Spec §1.2 DPOP-RS-01…35: RFC 9449 §4.3 proof checks at the resource server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from joserfc.jwk import OctKey, RSAKey
from joserfc.jws import JWSRegistry

from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.request import AuthRequest

from .helpers import (
    DROP,
    HTU,
    T0,
    URL,
    WRITE_URL,
    Env,
    assert_allowed,
    assert_D,
    b64u,
    b64u_json,
    public_key_jwk,
    sha256_b64u,
    thumb,
)

Case = Callable[[Env], AuthRequest]


def _signed_segments(env: Env, header_segment: str, payload_segment: str) -> str:
    signing_input = f"{header_segment}.{payload_segment}"
    signature = JWSRegistry.algorithms["ES256"].sign(signing_input.encode(), env.keys.K1)
    return f"{signing_input}.{b64u(signature)}"


def _claims(env: Env) -> dict[str, Any]:
    return {"jti": "j-1", "htm": "GET", "htu": HTU, "iat": T0, "ath": sha256_b64u(env.at_d.encode())}


def _header(env: Env) -> dict[str, Any]:
    return {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_key_jwk(env.keys.K1)}


def with_proof(make: Callable[[Env], str]) -> Case:
    return lambda env: env.b_dpop(make(env))


def flip_signature_bit(proof: str) -> str:
    import base64

    head, payload, sig = proof.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{b64u(bytes(raw))}"


def off_curve_jwk(env: Env) -> dict[str, Any]:
    jwk = public_key_jwk(env.keys.K1)
    y = bytearray(__import__("base64").urlsafe_b64decode(jwk["y"] + "=="))
    y[-1] ^= 0x01
    jwk["y"] = b64u(bytes(y))
    return jwk


_RSA1024: list[Any] = []


def rsa1024() -> Any:
    if not _RSA1024:
        _RSA1024.append(RSAKey.generate_key(1024))
    return _RSA1024[0]


def _jws_json(env: Env) -> str:
    head, payload, sig = env.proof().split(".")
    return json.dumps({"protected": head, "payload": payload, "signature": sig})


# id -> (request builder, acceptable reason codes); every one is 401·D(invalid_dpop_proof)
NEGATIVE: dict[str, tuple[Case, tuple[str, ...]]] = {
    "DPOP-RS-01-two-fields": (lambda env: AuthRequest.for_url("GET", URL, authorization=(f"DPoP {env.at_d}",),
                                                      dpop=(env.proof(), env.proof())), ("dpop_multiple_proofs",)),
    "DPOP-RS-01-folded-by-wsgi": (with_proof(lambda env: f"{env.proof()}, {env.proof()}"), ("dpop_multiple_proofs",)),
    "DPOP-RS-03-a-abc": (with_proof(lambda env: "abc"), ("dpop_malformed",)),
    "DPOP-RS-03-b-no-signature-part": (with_proof(lambda env: env.proof().rsplit(".", 1)[0]), ("dpop_malformed",)),
    "DPOP-RS-03-c-five-part-jwe": (with_proof(lambda env: b64u_json({"alg": "RSA-OAEP", "enc": "A256GCM"})
                                              + ".a2V5.aXY.Y2lwaGVy.dGFn"), ("dpop_malformed",)),
    "DPOP-RS-03-d-jws-json-serialization": (with_proof(_jws_json), ("dpop_malformed", "dpop_multiple_proofs")),
    "DPOP-RS-04-a-plus-in-segment": (with_proof(lambda env: _signed_segments(
        env, b64u_json(_header(env)), b64u_json(_claims(env)).replace("-", "+").replace("_", "+") + "+")),
        ("dpop_malformed",)),
    "DPOP-RS-04-a-slash-in-segment": (with_proof(lambda env: _signed_segments(
        env, b64u_json(_header(env)) + "/", b64u_json(_claims(env)))), ("dpop_malformed",)),
    "DPOP-RS-04-a-padding-equals": (with_proof(lambda env: _signed_segments(
        env, b64u_json(_header(env)), b64u_json(_claims(env)) + "==")), ("dpop_malformed",)),
    "DPOP-RS-04-b-header-json-array": (with_proof(lambda env: _signed_segments(
        env, b64u_json([_header(env)]), b64u_json(_claims(env)))), ("dpop_malformed",)),
    "DPOP-RS-04-c-payload-not-json": (with_proof(lambda env: _signed_segments(
        env, b64u_json(_header(env)), b64u(b"jti=1&htm=GET"))), ("dpop_malformed",)),
    **{f"DPOP-RS-05-{x}-no-{claim}": (with_proof(lambda env, c=claim: env.proof({c: DROP})), ("dpop_missing_claim",))
       for x, claim in zip("abcd", ("jti", "htm", "htu", "iat"), strict=True)},
    "DPOP-RS-06-no-ath": (with_proof(lambda env: env.proof({"ath": DROP})), ("dpop_missing_claim",)),
    **{f"DPOP-RS-07-{x}-typ-{label}": (with_proof(lambda env, t=typ: env.proof(header={"typ": t})), ("dpop_bad_typ",))
       for x, label, typ in (("a", "absent", DROP), ("b", "JWT", "JWT"), ("c", "wrongyousee", "dpop+jwt+wrongyousee"),
                             ("d", "at+jwt", "at+jwt"))},
    "DPOP-RS-09-alg-none": (with_proof(lambda env: b64u_json({**_header(env), "alg": "none"}) + "."
                                       + b64u_json(_claims(env)) + "."), ("dpop_bad_alg",)),
    "DPOP-RS-10-HS256-oct-jwk": (with_proof(lambda env: (lambda k: env.proof(
        header={"jwk": {"kty": "oct", "k": k.as_dict()["k"]}}, key=k, alg="HS256"))(OctKey.generate_key(256))),
        ("dpop_bad_alg",)),
    "DPOP-RS-11-a-RS256-not-allowed": (with_proof(lambda env: env.proof(key=env.keys.KR, alg="RS256")),
                                        ("dpop_bad_alg",)),
    "DPOP-RS-11-b-ES256K": (with_proof(lambda env: env.proof(header={"alg": "ES256K"})), ("dpop_bad_alg",)),
    "DPOP-RS-11-c-alg-absent": (with_proof(lambda env: env.proof(header={"alg": DROP})), ("dpop_bad_alg",)),
    "DPOP-RS-12-a-ES256-with-RSA-jwk": (with_proof(lambda env: env.proof(
        header={"jwk": public_key_jwk(env.keys.KR)})), ("dpop_alg_key_mismatch",)),
    "DPOP-RS-12-b-ES384-with-P256-jwk": (with_proof(lambda env: env.proof(header={"alg": "ES384"})),
                                          ("dpop_bad_alg", "dpop_alg_key_mismatch")),
    "DPOP-RS-12-c-EdDSA-with-EC-jwk": (with_proof(lambda env: env.proof(header={"alg": "EdDSA"})),
                                        ("dpop_alg_key_mismatch",)),
    "DPOP-RS-13-a-signature-bit-flipped": (with_proof(lambda env: flip_signature_bit(env.proof())),
                                            ("dpop_bad_signature",)),
    "DPOP-RS-13-b-signed-by-K2-jwk-K1": (with_proof(lambda env: env.proof(sign_key=env.keys.K2)),
                                          ("dpop_bad_signature",)),
    "DPOP-RS-15-a-EC-jwk-with-d": (with_proof(lambda env: env.proof(
        header={"jwk": {k: v for k, v in env.keys.K1.as_dict(private=True).items() if k != "kid"}})),
        ("dpop_private_jwk",)),
    "DPOP-RS-15-b-RSA-jwk-with-private-members": (with_proof(lambda env: env.proof(
        key=env.keys.KR, alg="PS256",
        header={"jwk": {k: v for k, v in env.keys.KR.as_dict(private=True).items() if k != "kid"}})),
        ("dpop_private_jwk",)),
    "DPOP-RS-16-a-no-jwk": (with_proof(lambda env: env.proof(header={"jwk": DROP})), ("dpop_bad_jwk",)),
    "DPOP-RS-16-b-jwk-string": (with_proof(lambda env: env.proof(
        header={"jwk": json.dumps(public_key_jwk(env.keys.K1))})),
                                ("dpop_bad_jwk",)),
    "DPOP-RS-16-c-EC-point-off-curve": (with_proof(lambda env: env.proof(header={"jwk": off_curve_jwk(env)})),
                                        ("dpop_bad_jwk",)),
    "DPOP-RS-16-d-RSA-1024": (with_proof(lambda env: env.proof(key=rsa1024(), alg="PS256")), ("dpop_bad_jwk",)),
    "DPOP-RS-19-htm-PUT": (with_proof(lambda env: env.proof({"htm": "PUT"})), ("dpop_htm_mismatch",)),
    "DPOP-RS-20-htm-lowercase-get": (with_proof(lambda env: env.proof({"htm": "get"})), ("dpop_htm_mismatch",)),
    "DPOP-RS-21-b-POST-request-htm-GET": (lambda env: _write_request(env, htm="GET"), ("dpop_htm_mismatch",)),
    "DPOP-RS-24-htu-different-url": (with_proof(lambda env: env.proof({"htu": "https://api.test/resourceohnonotagain"})),
                                     ("dpop_htu_mismatch",)),
    "DPOP-RS-25-a-other-host": (with_proof(lambda env: env.proof({"htu": "https://evil.test/resource"})),
                                ("dpop_htu_mismatch",)),
    "DPOP-RS-25-b-http-scheme": (with_proof(lambda env: env.proof({"htu": "http://api.test/resource"})),
                                 ("dpop_htu_mismatch",)),
    "DPOP-RS-25-c-other-port": (with_proof(lambda env: env.proof({"htu": "https://api.test:8443/resource"})),
                                ("dpop_htu_mismatch",)),
    "DPOP-RS-25-d-userinfo": (with_proof(lambda env: env.proof({"htu": "https://u@api.test/resource"})),
                              ("dpop_bad_htu", "dpop_htu_mismatch")),
    "DPOP-RS-28-a-relative-htu": (with_proof(lambda env: env.proof({"htu": "/resource"})), ("dpop_bad_htu",)),
    "DPOP-RS-28-b-numeric-htu": (with_proof(lambda env: env.proof({"htu": 123})), ("dpop_bad_htu",)),
    "DPOP-RS-28-c-garbage-htu": (with_proof(lambda env: env.proof({"htu": ":::*;"})), ("dpop_bad_htu",)),
    "DPOP-RS-29-b-htu-is-subrequest-url": (with_proof(lambda env: env.proof({"htu": "http://tokenguard:8080/auth"})),
                                           ("dpop_htu_mismatch",)),
    "DPOP-RS-31-a-iat-hour-past": (with_proof(lambda env: env.proof({"iat": T0 - 3600})), ("dpop_iat_too_old",)),
    "DPOP-RS-31-b-iat-hour-future": (with_proof(lambda env: env.proof({"iat": T0 + 3600})), ("dpop_iat_future",)),
    "DPOP-RS-32-a-iat-65s-past": (with_proof(lambda env: env.proof({"iat": T0 - 65})), ("dpop_iat_too_old",)),
    "DPOP-RS-32-b-iat-20s-future": (with_proof(lambda env: env.proof({"iat": T0 + 20})), ("dpop_iat_future",)),
    "DPOP-RS-32-c-iat-string": (with_proof(lambda env: env.proof({"iat": str(T0)})), ("dpop_bad_iat",)),
    "DPOP-RS-32-d-iat-milliseconds": (with_proof(lambda env: env.proof({"iat": T0 * 1000})), ("dpop_iat_future",)),
    "DPOP-RS-33-b-exp-passed": (with_proof(lambda env: env.proof({"exp": T0 - 120, "iat": T0 - 30})),
                                ("dpop_expired",)),
}


def _bound_to(env: Env, key: Any, alg: str) -> AuthRequest:
    """A token bound to ``key`` (not K1) and a proof that ``key`` signs with ``alg``."""
    token = env.token({"cnf": {"jkt": thumb(public_key_jwk(key))}})
    return env.b_dpop(env.proof(key=key, alg=alg, token=token), token=token)


def _write_request(env: Env, htm: str) -> AuthRequest:
    token = env._memo("at_d_write", lambda: env.token({"cnf": {"jkt": env.jkt1}, "scope": "write"}))
    proof = env.proof({"htm": htm, "htu": WRITE_URL}, token=token)
    return AuthRequest.for_url("POST", WRITE_URL, authorization=(f"DPoP {token}",), dpop=(proof,))


@pytest.mark.parametrize("case_id", list(NEGATIVE), ids=list(NEGATIVE))
def test_dpop_proof_rejected(env: Env, case_id: str) -> None:
    make, reasons = NEGATIVE[case_id]
    d = env.decide(make(env))
    assert_D(d, "invalid_dpop_proof")
    assert d.reason in reasons, f"reason {d.reason}, want one of {reasons}"
    assert env.replay._entries == {} or d.reason == "dpop_replay", "a refused proof must not consume its jti"


POSITIVE: dict[str, Case] = {
    "DPOP-RS-08-a-typ-application-prefix": with_proof(lambda env: env.proof(header={"typ": "application/dpop+jwt"})),
    "DPOP-RS-08-b-typ-case-variant": with_proof(lambda env: env.proof(header={"typ": "DPoP+JWT"})),
    "DPOP-RS-17-extra-header-and-claim": with_proof(lambda env: env.proof({"tx_id_key": 1}, header={"tx_id": 1})),
    "DPOP-RS-18-jwk-extra-members": with_proof(lambda env: env.proof(header={"jwk": {
        **public_key_jwk(env.keys.K1), "kid": "k1", "use": "sig", "alg": "ES256", "key_ops": ["verify"]}})),
    "DPOP-RS-21-a-POST-htm-POST": lambda env: _write_request(env, htm="POST"),
    "DPOP-RS-22-htu-with-query-and-fragment": with_proof(lambda env: env.proof({"htu": f"{HTU}?x=1#frag"})),
    "DPOP-RS-23-a-request-query-htu-without": lambda env: env.b_dpop(url=f"{HTU}?x=1&y=2"),
    "DPOP-RS-23-b-htu-other-query": with_proof(lambda env: env.proof({"htu": f"{HTU}?x=2"})),
    "DPOP-RS-26-a-uppercase-scheme-host": with_proof(lambda env: env.proof({"htu": "HTTPS://API.TEST/resource"})),
    "DPOP-RS-26-b-default-port": lambda env: env.b_dpop(env.proof({"htu": "https://api.test:443/resource"}),
                                                        url="https://api.test:443/resource?x=1"),
    "DPOP-RS-26-b-default-port-htu-only": with_proof(lambda env: env.proof({"htu": "https://api.test:443/resource"})),
    "DPOP-RS-26-c-pct-7E-vs-tilde": lambda env: env.b_dpop(env.proof({"htu": "https://api.test/%7Euser"}),
                                                           url="https://api.test/~user"),
    "DPOP-RS-26-c-pct-7e-lowercase-vs-7E": lambda env: env.b_dpop(env.proof({"htu": "https://api.test/%7euser"}),
                                                                  url="https://api.test/%7Euser"),
    "DPOP-RS-26-c-tilde-vs-pct": lambda env: env.b_dpop(env.proof({"htu": "https://api.test/~user"}),
                                                        url="https://api.test/%7Euser?q"),
    "DPOP-RS-26-d-dot-segments": lambda env: env.b_dpop(env.proof({"htu": "https://api.test/a/./b/../resource"}),
                                                        url="https://api.test/a/resource"),
    "DPOP-RS-29-a-htu-external-url": with_proof(lambda env: env.proof({"htu": "https://api.test/resource"})),
    "DPOP-RS-30-a-iat-10s-past": with_proof(lambda env: env.proof({"iat": T0 - 10})),
    "DPOP-RS-30-b-iat-8s-future": with_proof(lambda env: env.proof({"iat": T0 + 8})),
    "DPOP-RS-32-a-iat-55s-past": with_proof(lambda env: env.proof({"iat": T0 - 55})),
    "DPOP-RS-33-a-nbf-and-exp": with_proof(lambda env: env.proof({"nbf": T0, "exp": T0 + 300})),
    "DPOP-RS-baseline-PS256": lambda env: _bound_to(env, env.keys.KR, "PS256"),
    "DPOP-RS-baseline-EdDSA": lambda env: _bound_to(env, env.keys.KE, "EdDSA"),
}


@pytest.mark.parametrize("case_id", list(POSITIVE), ids=list(POSITIVE))
def test_dpop_proof_accepted(env: Env, case_id: str) -> None:
    d = env.decide(POSITIVE[case_id](env))
    assert_allowed(d)
    assert d.binding == "dpop"
    assert ("X-Auth-Binding", "dpop") in d.headers


def test_DPOP_RS_12_b_ES384_allowed_but_key_is_P256(env: Env) -> None:
    """With ES384 on the allow-list, the alg/key mismatch itself must refuse the proof."""
    verifier = DpopVerifier(algs=("ES256", "ES384"), clock=env.clock)
    from tokenguard.core.errors import InvalidDpopProof

    with pytest.raises(InvalidDpopProof) as info:
        verifier.verify([env.proof(header={"alg": "ES384"})], htm="GET", htu=HTU, access_token=env.at_d)
    assert info.value.reason == "dpop_alg_key_mismatch"


def test_DPOP_RS_34_same_proof_twice(env: Env) -> None:
    request = env.b_dpop()
    assert_allowed(env.decide(request))
    d = env.decide(request)
    assert_D(d, "invalid_dpop_proof", "dpop_replay")


def test_DPOP_RS_35_fresh_proof_reusing_jti(env: Env) -> None:
    assert_allowed(env.decide(env.b_dpop(env.proof({"jti": "fixed-jti"}))))
    env.clock.advance(1)
    d = env.decide(env.b_dpop(env.proof({"jti": "fixed-jti"})))
    assert_D(d, "invalid_dpop_proof", "dpop_replay")


def test_DPOP_RS_34_replay_window_outlives_iat_window(env: Env) -> None:
    """R-09: the jti is remembered for at least the whole window in which the proof is accepted."""
    request = env.b_dpop(env.proof({"iat": T0 + 15}))
    assert_allowed(env.decide(request))
    env.clock.advance(15 + 60)  # the proof's iat is now exactly at the past edge of the window
    assert env.dpop.replay_ttl >= 75
    assert_D(env.decide(request), "invalid_dpop_proof", "dpop_replay")


def test_DPOP_RS_oversized_jti_refused(env: Env) -> None:
    assert_D(env.decide(env.b_dpop(env.proof({"jti": "x" * 1000}))), "invalid_dpop_proof", "dpop_bad_jti")


def test_DPOP_RS_description_never_echoes_proof_content(env: Env) -> None:
    evil = 'https://api.test/"quote\\back'
    d = env.decide(env.b_dpop(env.proof({"htu": evil})))
    assert_D(d, "invalid_dpop_proof")
    assert '"' not in d.description and "\\" not in d.description
