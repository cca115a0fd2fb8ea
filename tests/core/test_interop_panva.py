"""Interop (RFC 9864): proofs from panva's ``dpop`` npm package, and the fully-specified EdDSA names.

``fixtures/panva_dpop.json`` holds proofs that ``scripts/panva_dpop_fixtures.mjs`` made with dpop@2.1.2
(Ed25519 signed as ``alg: "Ed25519"``, ES256, PS256, RS256), with each key's public JWK and ``iat``. They
are verified under a frozen clock by the default configuration: before RFC 9864's names were in the
defaults, the Ed25519 proofs were refused with ``dpop_bad_alg``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from joserfc import jws
from joserfc.jwk import OKPKey

from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.jwks import JwksCache
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.request import AuthRequest
from tokenguard.settings import parse_config
from tokenguard.settings.wiring import build_responder, build_verifier

from .helpers import b64u, sign_jws

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "panva_dpop.json").read_text())
PROOFS = FIXTURES["proofs"]
ISS, AUD = "https://as.example", "https://api.example"


def rfc7638(jwk: dict[str, str]) -> str:
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


def _b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _at(seconds: float) -> Any:
    return freeze_time(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


def test_the_fixtures_are_what_the_script_says() -> None:
    assert FIXTURES["generator"].startswith("dpop@2.1.2 ")
    assert {p["alg"] for p in PROOFS} == {"Ed25519", "ES256", "PS256", "RS256"}
    for item in PROOFS:
        header = json.loads(_b64d(item["proof"].split(".")[0]))
        assert header["alg"] == item["alg"] and header["typ"] == "dpop+jwt"
        assert header["jwk"] == item["public_jwk"]


@pytest.mark.parametrize("item", PROOFS, ids=[f"{p['alg']}-{p['htm']}" for p in PROOFS])
def test_panva_proofs_verify_with_the_default_algs(item: dict[str, Any]) -> None:
    with _at(item["iat"] + 5):
        verifier = DpopVerifier(replay=MemoryReplayStore(clock=time.time), clock=time.time)  # default algs
        proof = verifier.verify([item["proof"]], htm=item["htm"], htu=item["htu"],
                                access_token=item["access_token"])
    assert proof.jkt == rfc7638(item["public_jwk"])
    assert proof.nonce == item["nonce"] and proof.htu == item["htu"]
    assert proof.header["alg"] == item["alg"]


def test_a_panva_ed25519_proof_is_allowed_by_a_default_config(tmp_path: Path) -> None:
    """End to end through the settings defaults: an opaque, DPoP-bound token (introspected) and the proof."""
    item = next(p for p in PROOFS if p["alg"] == "Ed25519" and p["access_token"])
    config = parse_config({"server": {"state_dir": str(tmp_path)}, "token": {"audience": AUD},
                           "dpop": {"nonce_secret": "interop-tests-nonce-secret"},
                           "issuer": [{"issuer": ISS, "introspection_client_id": "rs",
                                       "introspection_client_secret": "s"}]}, "test.toml", env={})

    def introspect(url: str, form: Any, auth: Any) -> dict[str, Any]:
        return {"active": True, "iss": ISS, "sub": "someone", "client_id": "c1", "scope": "read",
                "exp": item["iat"] + 600, "cnf": {"jkt": rfc7638(item["public_jwk"])}}

    with _at(item["iat"] + 5):
        verifier = build_verifier(config, clock=time.time, post=introspect, fetch=lambda url: {"keys": []},
                                  replay=MemoryReplayStore(clock=time.time))
        request = AuthRequest.for_url(item["htm"], item["htu"], authorization=(f"DPoP {item['access_token']}",),
                                      dpop=(item["proof"],))
        decision = verifier.decide(request)
    assert decision.allow, decision.reason
    assert decision.thumbprint == rfc7638(item["public_jwk"])


def test_the_default_challenge_advertises_the_fully_specified_names() -> None:
    algs = build_responder(parse_config({}, "defaults", env={})).dpop_algs
    assert {"Ed25519", "Ed448", "EdDSA", "ES256"} <= set(algs)


@pytest.mark.parametrize("curve", ["Ed25519", "Ed448"])
def test_access_tokens_signed_with_a_fully_specified_name_are_accepted_by_default(curve: str) -> None:
    key = OKPKey.generate_key(curve, parameters={"kid": "k1"}, private=True)
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "u", "client_id": "c", "iat": now, "exp": now + 60, "jti": "j"}
    token = jws.serialize_compact({"typ": "at+jwt", "alg": curve, "kid": "k1"}, json.dumps(claims), key,
                                  algorithms=[curve])
    public = dict(key.as_dict(private=False), alg=curve, use="sig")
    keys = JwksCache(ISS, jwks_uri="x", fetch=lambda _u: {"keys": [public]})
    validator = AccessTokenValidator([Issuer(ISS, jwks=keys)], audiences=[AUD])  # default algs
    assert validator.validate(token).claims["sub"] == "u"


@pytest.mark.parametrize(("curve", "alg", "ok"), [
    ("Ed25519", "Ed25519", True), ("Ed448", "Ed448", True), ("Ed25519", "EdDSA", True), ("Ed448", "EdDSA", True),
    ("Ed448", "Ed25519", False), ("Ed25519", "Ed448", False),
])
def test_a_fully_specified_name_takes_only_its_own_curve(curve: str, alg: str, ok: bool) -> None:
    """RFC 9864 §2.2: ``Ed25519`` and ``Ed448`` name the curve; the polymorphic ``EdDSA`` takes either."""
    from tokenguard.core.errors import InvalidDpopProof

    key = OKPKey.generate_key(curve, private=True)
    public = {k: v for k, v in key.as_dict(private=False).items() if k in ("kty", "crv", "x")}
    now = int(time.time())
    proof = sign_jws({"typ": "dpop+jwt", "alg": alg, "jwk": public},
                     {"jti": "j1", "htm": "GET", "htu": "https://api.example/x", "iat": now}, key,
                     curve if alg != "EdDSA" else "EdDSA")
    verifier = DpopVerifier()
    if ok:
        assert verifier.verify([proof], htm="GET", htu="https://api.example/x").jkt == rfc7638(public)
    else:
        with pytest.raises(InvalidDpopProof) as refused:
            verifier.verify([proof], htm="GET", htu="https://api.example/x")
        assert refused.value.reason == "dpop_alg_key_mismatch"
