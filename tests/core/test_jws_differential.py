"""Differential test: the lean ``tokenguard.core.jws`` route must agree with joserfc on a corpus.

Lean: ``parse_compact`` + header ``alg`` equal to the expected alg + ``verify_signature``.
Oracle: ``joserfc.jws.deserialize_compact(token, key, algorithms=[alg])`` whose payload is a JSON
object (a JWT claims set — the lean parser only handles those). Unknown header parameters are allowed
on both sides (RFC 7515 §4: ignore what is not understood, unless ``crit``). Agreement means both
accept or both reject.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry, deserialize_compact

from tokenguard.core.jwk import import_public_key
from tokenguard.core.jws import JWSError, parse_compact, verify_signature

from .helpers import b64u, b64u_json, sign_jws

ALGS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")
ORDERS = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                 "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
    "ES512": int("01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
                 "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16),
}


class _Lenient(JWSRegistry):
    max_header_length = 4096




def _key_for(alg: str) -> Any:
    if alg.startswith("ES"):
        return ECKey.generate_key({"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg])
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[Any, Any]]:
    """alg -> (signing key, another key of the same type)."""
    out: dict[str, tuple[Any, Any]] = {}
    rsa = (RSAKey.generate_key(2048), RSAKey.generate_key(2048))
    for alg in ALGS:
        out[alg] = rsa if alg[:2] in ("RS", "PS") else (_key_for(alg), _key_for(alg))
    return out


def _pub(key: Any) -> dict[str, Any]:
    return {k: v for k, v in key.as_dict(private=False).items() if k not in ("kid",)}


def lean_accepts(token: str, pub: dict[str, Any], alg: str) -> bool:
    try:
        jws = parse_compact(token)
    except JWSError:
        return False
    if jws.header.get("alg") != alg:
        return False
    return verify_signature(alg, import_public_key(pub), jws.signing_input, jws.signature)


def joserfc_accepts(token: str, pub: dict[str, Any], alg: str) -> bool:
    key = {"EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}[pub["kty"]].import_key(pub)
    try:
        registry = _Lenient(strict_check_header=False, algorithms=[alg])
        obj = deserialize_compact(token, key, algorithms=[alg], registry=registry)
        payload = json.loads(obj.payload)
    except Exception:  # noqa: BLE001 - any refusal by the oracle is a rejection
        return False
    return isinstance(payload, dict)


def _d(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def _flip_bit(seg: str, index: int) -> str:
    raw = bytearray(_d(seg))
    if not raw:
        return seg + "A"
    raw[index % len(raw)] ^= 0x01
    return b64u(bytes(raw))


def _swap_char(seg: str, index: int) -> str:
    chars = list(seg)
    i = index % len(chars)
    chars[i] = "B" if chars[i] != "B" else "C"
    return "".join(chars)


def _corpus(keys: dict[str, tuple[Any, Any]]) -> Iterator[tuple[str, str, dict[str, Any], str, bool | None]]:
    """(case id, token, verification key, expected alg, expected outcome or None when not pinned)."""
    claims = {"iss": "https://as.test", "sub": "u1", "iat": 1700000000, "jti": "abc"}
    for alg in ALGS:
        key, other = keys[alg]
        pub = _pub(key)
        token = sign_jws({"alg": alg, "typ": "JWT", "kid": "k"}, claims, key, alg)
        h, p, s = token.split(".")
        yield f"{alg}-valid", token, pub, alg, True
        yield f"{alg}-extra-header-member", sign_jws({"alg": alg, "x-extra": [1]}, claims, key, alg), pub, alg, True
        for seg_index, name in enumerate(("header", "payload", "signature")):
            parts = [h, p, s]
            for pos in (0, 5, -1):
                mutated = list(parts)
                mutated[seg_index] = _flip_bit(parts[seg_index], pos)
                yield f"{alg}-bitflip-{name}-{pos}", ".".join(mutated), pub, alg, False
                mutated = list(parts)
                mutated[seg_index] = _swap_char(parts[seg_index], pos)
                yield f"{alg}-charswap-{name}-{pos}", ".".join(mutated), pub, alg, None
        yield f"{alg}-wrong-key", token, _pub(other), alg, False
        for wrong in ("ES256", "RS256", "PS256", "EdDSA", "ES512"):
            if wrong != alg:
                yield f"{alg}-header-claims-{wrong}", sign_jws({"alg": wrong}, claims, key, alg), pub, wrong, False
        sig = _d(s)
        yield f"{alg}-truncated-signature", f"{h}.{p}.{b64u(sig[:-1])}", pub, alg, False
        extended = b64u(sig + bytes(1))
        yield f"{alg}-extended-signature", f"{h}.{p}.{extended}", pub, alg, False
        yield f"{alg}-empty-signature", f"{h}.{p}.", pub, alg, False
        yield f"{alg}-no-signature-part", f"{h}.{p}", pub, alg, False
        if alg in ORDERS:
            size = len(sig) // 2
            r, s_int = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            high = (ORDERS[alg] - s_int).to_bytes(size, "big")
            # JWS has no low-S rule and replay is keyed on jti, not on the signature: both accept
            yield f"{alg}-high-S", f"{h}.{p}.{b64u(sig[:size] + high)}", pub, alg, True
            yield f"{alg}-DER-signature", f"{h}.{p}.{b64u(encode_dss_signature(r, s_int))}", pub, alg, False
    # the malformed DPOP-RS-03/04 proofs, made with a valid ES256 signature wherever one can exist
    key, _ = keys["ES256"]
    pub = _pub(key)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": pub}
    proof = sign_jws(header, claims, key, "ES256")
    h, p, s = proof.split(".")

    def signed(hs: str, ps: str) -> str:
        signature = JWSRegistry.algorithms["ES256"].sign(f"{hs}.{ps}".encode(), key)
        return f"{hs}.{ps}.{b64u(signature)}"

    yield "DPOP-RS-03-a-abc", "abc", pub, "ES256", False
    yield "DPOP-RS-03-b-header-payload-only", f"{h}.{p}", pub, "ES256", False
    yield "DPOP-RS-03-c-five-parts", f"{h}.{p}.{s}.eA.eA", pub, "ES256", False
    yield "DPOP-RS-03-d-json-serialization", json.dumps({"protected": h, "payload": p, "signature": s}), \
        pub, "ES256", False
    yield "DPOP-RS-04-a-plus", signed(h, p.replace("_", "+").replace("-", "+") + "+"), pub, "ES256", False
    yield "DPOP-RS-04-a-slash", signed(h + "/", p), pub, "ES256", False
    yield "DPOP-RS-04-a-equals", signed(h, p + "=="), pub, "ES256", False
    yield "DPOP-RS-04-a-equals-signature", f"{h}.{p}.{s}==", pub, "ES256", False
    yield "DPOP-RS-04-b-header-array", signed(b64u_json([header]), p), pub, "ES256", False
    yield "DPOP-RS-04-c-payload-not-json", signed(h, b64u(b"not json")), pub, "ES256", False
    yield "DPOP-RS-04-c-payload-json-array", signed(h, b64u_json([claims])), pub, "ES256", False
    yield "DPOP-RS-09-alg-none", f"{b64u_json({**header, 'alg': 'none'})}.{p}.", pub, "ES256", False
    yield "DPOP-RS-11-c-alg-absent", signed(b64u_json({k: v for k, v in header.items() if k != "alg"}), p), \
        pub, "ES256", False




def test_jws_differential_corpus(keys: dict[str, tuple[Any, Any]]) -> None:
    disagreements, wrong, count = [], [], 0
    for case_id, token, pub, alg, expected in _corpus(keys):
        count += 1
        lean, oracle = lean_accepts(token, pub, alg), joserfc_accepts(token, pub, alg)
        if lean != oracle:
            disagreements.append(f"{case_id}: lean={lean} joserfc={oracle}")
        if expected is not None and lean != expected:
            wrong.append(f"{case_id}: lean={lean}, want {expected}")
    assert count > 300
    assert not disagreements, "\n".join(disagreements)
    assert not wrong, "\n".join(wrong)
