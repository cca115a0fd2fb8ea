"""Known answers: R-05 ath, R-06 thumbprints, R-19 RFC 9449 Figure 13 (and Figure 5) proofs.

The RFC 9449 proofs below are the figures' compact JWTs with the display line breaks removed. They are
checked byte-for-byte by decoding them to the exact JSON of the RFC's figures and by verifying the
ES256 signature under the Figure 4 key (a single wrong character would break it).
"""

from __future__ import annotations

import base64
import datetime
import json
import time

import pytest
from freezegun import freeze_time

from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.dpop import DpopVerifier, ath_for, create_proof
from tokenguard.core.introspection import Introspector
from tokenguard.core.jwk import import_public_key, thumbprint
from tokenguard.core.jws import parse_compact, verify_signature
from tokenguard.core.policy import Policy, Route
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.request import AuthRequest
from tokenguard.core.verifier import Verifier
from tokenguard.settings.wiring import core_bindings
from tokenguard.web.responses import Responder

from .helpers import URL, Env, assert_allowed, private_key_jwk, public_key_jwk, thumb

RFC_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC_ATH = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
RFC_JWK = {"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
           "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"}

FIG13_PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik"
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR"
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj"
    "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z"
    "WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF"
    "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E"
    "OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA")

FIG5_PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik"
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR"
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj"
    "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia"
    "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4"
    "PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg")

RFC7638_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
         "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQ"
         "MicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcR"
         "wr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
RFC8037_ED25519 = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


def _decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_R05_ath_known_answer() -> None:
    assert ath_for(RFC_TOKEN) == RFC_ATH


@pytest.mark.parametrize("jwk,expected", [
    (RFC7638_RSA, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"),
    (RFC_JWK, RFC_JKT),
    (RFC8037_ED25519, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"),
], ids=["R-06-RSA-RFC7638", "R-06-EC-RFC9449", "R-06-Ed25519-RFC8037"])
def test_R06_thumbprint_known_answers(jwk: dict, expected: str) -> None:
    assert thumbprint(jwk) == expected
    assert thumb(jwk) == expected
    assert thumbprint({**jwk, "kid": "x", "use": "sig", "key_ops": ["verify"], "alg": "X"}) == expected


def test_R19_figure13_bytes() -> None:
    head, payload, sig = FIG13_PROOF.split(".")
    assert json.loads(_decode(head)) == {"typ": "dpop+jwt", "alg": "ES256", "jwk": RFC_JWK}
    assert json.loads(_decode(payload)) == {"jti": "e1j3V_bKic8-LAEB", "htm": "GET",
                                            "htu": "https://resource.example.org/protectedresource",
                                            "iat": 1562262618, "ath": RFC_ATH}
    jws = parse_compact(FIG13_PROOF)
    assert verify_signature("ES256", import_public_key(RFC_JWK), jws.signing_input, jws.signature)


def _rfc_verifier(clock) -> Verifier:
    def introspect(url, form, auth):
        assert form["token"] == RFC_TOKEN
        return {"active": True, "sub": "someone@example.com", "iss": "https://server.example.com",
                "client_id": "s6BhdRkqt3", "token_type": "DPoP", "exp": 1562266216, "cnf": {"jkt": RFC_JKT}}

    issuer = Issuer("https://server.example.com",
                    introspector=Introspector("https://server.example.com/introspect", "rs", "secret",
                                              post=introspect, clock=clock))
    tokens = AccessTokenValidator([issuer], audiences=["https://resource.example.org"], clock=clock)
    dpop = DpopVerifier(algs=("ES256", "PS256", "EdDSA"), replay=MemoryReplayStore(clock=clock), clock=clock)
    policy = Policy(routes=(Route(name="rfc", hosts=("resource.example.org",), path="/protectedresource",
                                  methods=("GET",)),))
    verifier = Verifier(tokens, core_bindings(dpop), policy, replay=dpop.replay)
    responder = Responder(realm="tokenguard", auth_request_mode=True, dpop_algs=dpop.algs)
    return lambda request: responder.render(verifier.decide(request))


def test_R19_figure13_allowed_with_frozen_clock() -> None:
    with freeze_time(datetime.datetime.fromtimestamp(1562262618, datetime.UTC)):
        decide = _rfc_verifier(lambda: time.time())
        request = AuthRequest.for_url("GET", "https://resource.example.org/protectedresource",
                              authorization=(f"DPoP {RFC_TOKEN}",), dpop=(FIG13_PROOF,))
        d = decide(request)
        assert_allowed(d)
        assert ("X-Auth-Jkt", RFC_JKT) in d.headers
        assert ("X-Auth-Subject", "someone@example.com") in d.headers
        # ... and exactly once (§11.1)
        assert decide(request).reason == "dpop_replay"


def test_R19_figure13_refused_an_hour_later() -> None:
    with freeze_time(datetime.datetime.fromtimestamp(1562262618 + 3600, datetime.UTC)):
        decide = _rfc_verifier(lambda: time.time())
        d = decide(AuthRequest.for_url("GET", "https://resource.example.org/protectedresource",
                                        authorization=(f"DPoP {RFC_TOKEN}",), dpop=(FIG13_PROOF,)))
        assert d.status == 401 and d.reason == "dpop_iat_too_old"


def test_R19_figure5_token_request_proof() -> None:
    verifier = DpopVerifier(algs=("ES256",), clock=lambda: 1562262616)
    proof = verifier.verify([FIG5_PROOF], htm="POST", htu="https://server.example.com/token")
    assert proof.jkt == RFC_JKT and proof.jti == "-BwC3ESc6acc2lTc" and proof.iat == 1562262616


@pytest.mark.parametrize("which,alg", [("K1", "ES256"), ("KR", "PS256"), ("KE", "EdDSA")])
def test_create_proof_round_trip_frozen_end_to_end(env: Env, which: str, alg: str) -> None:
    """create_proof under freezegun, accepted by the whole pipeline at the frozen instant."""
    key = getattr(env.keys, which)
    with freeze_time(datetime.datetime.fromtimestamp(env.clock(), datetime.UTC)):
        env.build(clock=lambda: time.time())
        token = env.token({"cnf": {"jkt": thumb(public_key_jwk(key))}})
        proof = create_proof(private_key_jwk(key), htm="GET", htu="https://api.test/resource?x=1#f",
                             access_token=token, alg=alg if which == "KR" else None)
        head, payload, _ = proof.split(".")
        header, claims = json.loads(_decode(head)), json.loads(_decode(payload))
        assert header["typ"] == "dpop+jwt" and header["alg"] == alg and "d" not in header["jwk"]
        assert claims["htu"] == "https://api.test/resource" and claims["iat"] == int(env.clock())
        assert claims["ath"] == ath_for(token)
        d = env.decide(AuthRequest.for_url("GET", URL, authorization=(f"DPoP {token}",), dpop=(proof,)))
        assert_allowed(d)
