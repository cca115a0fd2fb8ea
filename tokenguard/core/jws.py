"""Compact JWS (RFC 7515 §7.1) parsing and signature verification on ``cryptography``.

This is the hot path's lean route: joserfc's full decode costs about twice the raw signature check,
so parsing and verification are done here and differential-tested against joserfc
(``tests/test_jws_differential.py``). Signing stays with joserfc.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokenguard.core.b64 import b64url_decode
from tokenguard.core.jwk import PublicKey

_HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
# Algorithm objects are immutable: build them once rather than on every verification.
_ECDSA = {alg: ec.ECDSA(_HASHES[alg[2:]]) for alg in _EC_SIZES}
_RSA: dict[str, tuple[padding.AsymmetricPadding, hashes.HashAlgorithm]] = {
    **{f"RS{n}": (padding.PKCS1v15(), h) for n, h in _HASHES.items()},
    **{f"PS{n}": (padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h) for n, h in _HASHES.items()},
}

#: EdDSA (RFC 8037): the polymorphic name takes either curve, the fully-specified names (RFC 9864) one each.
_EDDSA: dict[str, type | tuple[type, ...]] = {
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
    "Ed25519": ed25519.Ed25519PublicKey,
    "Ed448": ed448.Ed448PublicKey,
}


class JWSError(ValueError):
    """Not a well-formed compact JWS."""


@dataclass(frozen=True, slots=True)
class CompactJWS:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes
    header_segment: str


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise JWSError("duplicate JSON member")  # RFC 7515 §5.2: reject rather than guess
    return obj


def _reject_constant(name: str) -> Any:
    raise JWSError(f"non-standard JSON constant {name}")


_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def parse_json_object(segment: str, what: str) -> dict[str, Any]:
    """base64url-decode one segment and parse it as a JSON object (RFC 7515 §5.2 steps 2-4)."""
    try:
        raw = b64url_decode(segment)
        value = _decoder.decode(raw.decode("utf-8"))
    except JWSError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JWSError(f"{what} is not base64url-encoded JSON") from exc
    if not isinstance(value, dict):
        raise JWSError(f"{what} is not a JSON object")
    return value


def parse_compact(token: str, known_header: dict[str, Any] | None = None) -> CompactJWS:
    """Split and decode a compact JWS; the payload must be a JSON object (a JWT claims set).

    ``known_header`` is the already-decoded header when the caller has seen this exact header
    segment before (DPoP clients repeat theirs on every request), saving its decode.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JWSError("not a three-part compact JWS")
    header_segment, payload_segment, signature_segment = parts
    header = known_header if known_header is not None else parse_json_object(header_segment, "header")
    payload = parse_json_object(payload_segment, "payload")
    try:
        signature = b64url_decode(signature_segment)
    except ValueError as exc:
        raise JWSError("signature is not base64url") from exc
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return CompactJWS(header, payload, signing_input, signature, header_segment)


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    """RFC 7518 §3 signature check for asymmetric algs; ``False`` for any mismatch or misuse."""
    try:
        if alg in _EC_SIZES:
            size = _EC_SIZES[alg]
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, _ECDSA[alg])
            return True
        if alg[:2] in ("RS", "PS") and alg[2:] in _HASHES:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            pad, digest = _RSA[alg]
            key.verify(signature, signing_input, pad, digest)
            return True
        if (alg in _EDDSA and isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
                and isinstance(key, _EDDSA[alg])):  # RFC 8037 §3.1, RFC 9864 §2.2: the curve the alg names
            key.verify(signature, signing_input)
            return True
    except (InvalidSignature, ValueError):
        return False
    return False
