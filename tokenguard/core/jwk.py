"""JSON Web Keys: RFC 7638 thumbprints and public-key import for signature checks.

Keys arriving in DPoP proofs are attacker-controlled, so import validates everything a verifier relies
on: only public members (RFC 9449 §4.3 (7)), a point on the named curve, an RSA modulus of at least
2048 bits, and a key type that matches the JWS ``alg`` (RFC 9449 §4.3 (5), (6)).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from tokenguard.core.b64 import b64url_decode, b64url_encode
from tokenguard.core.cache import BoundedCache

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

#: RFC 7638 §3.2: the members that enter the thumbprint, per key type.
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x"),
                      "oct": ("k", "kty")}

#: Members that only private (or symmetric) keys have; a public JWK carrying any of them is refused.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_EC_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}

#: Which key each asymmetric JWS alg needs: (kty, curve or None).
ALG_KEY = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "EdDSA": ("OKP", None), "Ed25519": ("OKP", "Ed25519"), "Ed448": ("OKP", "Ed448"),  # RFC 8037, RFC 9864 §2.2
}
ASYMMETRIC_ALGS = frozenset(ALG_KEY)
MIN_RSA_BITS = 2048


class JWKError(ValueError):
    """The JWK is malformed, private, weak, or does not fit the algorithm."""


def required_members(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3.2-§3.3: the required members only, as received, in canonical JSON (the hash input)."""
    try:
        members = THUMBPRINT_MEMBERS[jwk["kty"]]
        subset = {name: jwk[name] for name in members}
    except (KeyError, TypeError) as exc:
        raise JWKError("JWK lacks the members its thumbprint needs") from exc
    if not all(isinstance(value, str) for value in subset.values()):
        raise JWKError("JWK members must be strings")
    return json.dumps(subset, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3 thumbprint (SHA-256, base64url) over the required members, as received."""
    return b64url_encode(hashlib.sha256(required_members(jwk).encode("utf-8")).digest())


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise JWKError(f"JWK member {name} missing or not a string")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise JWKError(f"JWK member {name} is not base64url") from exc


def import_public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """Build a ``cryptography`` public key from a public JWK, validating it (no private members)."""
    if not isinstance(jwk, Mapping):
        raise JWKError("jwk is not a JSON object")
    if PRIVATE_MEMBERS.intersection(jwk):
        raise JWKError("jwk contains private key material")
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            curve_name = jwk.get("crv")
            if curve_name not in _EC_CURVES:
                raise JWKError("unsupported EC curve")
            curve, size = _EC_CURVES[curve_name]
            x, y = _member(jwk, "x"), _member(jwk, "y")
            if len(x) != size or len(y) != size:
                raise JWKError("EC coordinates have the wrong length")
            numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve)
            return numbers.public_key()  # raises ValueError when the point is not on the curve
        if kty == "RSA":
            n, e = _member(jwk, "n"), _member(jwk, "e")
            modulus = int.from_bytes(n, "big")
            if modulus.bit_length() < MIN_RSA_BITS:
                raise JWKError("RSA modulus shorter than 2048 bits")
            return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), modulus).public_key()
        if kty == "OKP":
            x = _member(jwk, "x")
            if jwk.get("crv") == "Ed25519":
                return ed25519.Ed25519PublicKey.from_public_bytes(x)
            if jwk.get("crv") == "Ed448":
                return ed448.Ed448PublicKey.from_public_bytes(x)
            raise JWKError("unsupported OKP curve")
    except JWKError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise JWKError("invalid public key") from exc
    raise JWKError("unsupported or missing kty")


def key_fits_alg(jwk: Mapping[str, Any], alg: str) -> bool:
    """RFC 9449 §4.3 (5)-(6): the JWS ``alg`` must match the key type and curve."""
    need = ALG_KEY.get(alg)
    if need is None or jwk.get("kty") != need[0]:
        return False
    if need[0] == "EC":
        return jwk.get("crv") == need[1]
    if need[0] == "OKP":
        return jwk.get("crv") in (("Ed25519", "Ed448") if alg == "EdDSA" else (need[1],))
    return True


class PublicKeyCache:
    """Imported keys, keyed by the RFC 7638 required members: importing costs ~70 µs, a lookup ~1.

    The key object depends on nothing else, so members a client adds (``kid``, padding) neither make
    new entries nor fill the cache; the byte budget bounds what many distinct keys can hold.
    """

    #: What one imported key object holds on top of its members (OpenSSL key structures).
    KEY_OVERHEAD = 1024

    def __init__(self, size: int = 4096, max_bytes: int = 4 << 20) -> None:
        self._keys: BoundedCache[str, PublicKey] = BoundedCache(size, max_bytes)

    def get(self, jwk: Mapping[str, Any]) -> PublicKey:
        if not isinstance(jwk, Mapping):
            raise JWKError("jwk is not a JSON object")
        if PRIVATE_MEMBERS.intersection(jwk):
            raise JWKError("jwk contains private key material")
        cache_key = required_members(jwk)
        key = self._keys.get(cache_key)
        if key is None:
            key = import_public_key(jwk)
            self._keys.put(cache_key, key, len(cache_key) + self.KEY_OVERHEAD)
        return key


def public_jwk(private_jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The public half of a JWK (required members plus ``kid``/``alg``/``use`` if present)."""
    kty = private_jwk.get("kty")
    if kty not in ("EC", "RSA", "OKP"):
        raise JWKError("unsupported kty")
    keep = [m for m in THUMBPRINT_MEMBERS[kty]] + ["kid", "alg", "use"]
    return {name: private_jwk[name] for name in keep if name in private_jwk}


def default_alg(jwk: Mapping[str, Any]) -> str:
    """The JWS alg a key signs with when it names none: by curve for EC, EdDSA for OKP, else RS256."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(crv), "ES256")
    if kty == "OKP":
        return "EdDSA"
    return "PS256" if jwk.get("alg") == "PS256" else "RS256"
