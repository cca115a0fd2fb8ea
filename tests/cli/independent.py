"""An RFC 9449 proof check written directly on ``cryptography``, sharing no code with tokenguard.

It decodes the compact JWS by hand, rebuilds the public key from the header's ``jwk``, converts an
ECDSA R‖S signature to DER with ``encode_dss_signature`` and verifies; then it checks the §4.2 shape.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64d(text: str) -> bytes:
    assert "=" not in text and "+" not in text and "/" not in text, "not unpadded base64url"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc7638(jwk: dict[str, Any]) -> str:
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64e(hashlib.sha256(canonical.encode()).digest())


def verify_proof(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the signature with the embedded key; return (header, claims). Raises on any failure."""
    h64, p64, s64 = proof.split(".")
    header = json.loads(b64d(h64))
    claims = json.loads(b64d(p64))
    signature = b64d(s64)
    signing_input = f"{h64}.{p64}".encode()
    jwk, alg = header["jwk"], header["alg"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk), "private members in the proof's jwk"
    if alg == "ES256":
        assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
        assert len(signature) == 64, "ES256 signature must be raw R||S (64 bytes), not DER"
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(b64d(jwk["x"]), "big"),
                                            int.from_bytes(b64d(jwk["y"]), "big"), ec.SECP256R1()).public_key()
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    elif alg == "EdDSA":
        assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
        ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"])).verify(signature, signing_input)
    elif alg in ("RS256", "PS256"):
        assert jwk["kty"] == "RSA"
        rsa_key = rsa.RSAPublicNumbers(int.from_bytes(b64d(jwk["e"]), "big"),
                                       int.from_bytes(b64d(jwk["n"]), "big")).public_key()
        pad = (padding.PKCS1v15() if alg == "RS256"
               else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))
        rsa_key.verify(signature, signing_input, pad, hashes.SHA256())
    else:
        raise AssertionError(f"unexpected alg {alg}")
    assert header["typ"] == "dpop+jwt"
    for name in ("jti", "htm", "htu", "iat"):
        assert name in claims, f"missing {name}"
    assert isinstance(claims["iat"], int)
    assert "?" not in claims["htu"] and "#" not in claims["htu"]
    return header, claims


def ath(token: str) -> str:
    return b64e(hashlib.sha256(token.encode("ascii")).digest())
