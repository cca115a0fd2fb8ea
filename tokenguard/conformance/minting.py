"""Keys, certificates, access tokens and DPoP proofs for the conformance suite (docs/conformance-cases.md, Notation).

Everything here is built directly on ``cryptography`` so that the suite shares no code with the
verifier it tests, and so that deliberately malformed objects (wrong ``alg`` for the key, private
members in ``jwk``, non-base64url segments, …) can be produced byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: Sentinel: ``claims``/``header`` entries set to REMOVE are deleted ("claim removed" in the Notation).
REMOVE: Any = object()


def b64u(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict-enough base64url decoding for the suite's own objects."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64u(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64u(value.to_bytes(size, "big"))


def json_bytes(obj: Any) -> bytes:
    """Compact JSON serialisation used for JOSE headers and payloads."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- JWKs


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """Public JWK of a private key (RFC 7518 §6.2, §6.3; RFC 8037 §2)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        nums = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp256k1": "secp256k1"}[key.curve.name]
        return {"kty": "EC", "crv": crv, "x": _int_b64u(nums.x, size), "y": _int_b64u(nums.y, size)}
    if isinstance(key, rsa.RSAPrivateKey):
        pub = key.public_key().public_numbers()
        return {"kty": "RSA", "e": _int_b64u(pub.e), "n": _int_b64u(pub.n)}
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}


def private_jwk(key: PrivateKey) -> dict[str, str]:
    """Full private JWK (used only for the "private key in jwk" negative cases, RFC 9449 §4.3(7))."""
    jwk = public_jwk(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk["d"] = _int_b64u(key.private_numbers().private_value, (key.curve.key_size + 7) // 8)
    elif isinstance(key, rsa.RSAPrivateKey):
        priv = key.private_numbers()
        jwk.update(
            d=_int_b64u(priv.d), p=_int_b64u(priv.p), q=_int_b64u(priv.q),
            dp=_int_b64u(priv.dmp1), dq=_int_b64u(priv.dmq1), qi=_int_b64u(priv.iqmp),
        )
    else:
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        jwk["d"] = b64u(raw)
    return jwk


_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                       "OKP": ("crv", "kty", "x"), "oct": ("k", "kty")}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3 JWK SHA-256 thumbprint: required members only, sorted, no whitespace."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode("utf-8")).digest())


def ath(access_token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url(SHA-256(ASCII(access token)))."""
    return b64u(hashlib.sha256(access_token.encode("ascii")).digest())


def x5t_s256(der: bytes) -> str:
    """RFC 8705 §3.1 ``x5t#S256``: base64url(SHA-256(DER certificate))."""
    return b64u(hashlib.sha256(der).digest())


# --------------------------------------------------------------------------- JWS


def _ec_raw(der_sig: bytes, size: int) -> bytes:
    r, s = decode_dss_signature(der_sig)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_sign(alg: str, key: PrivateKey | bytes, signing_input: bytes) -> bytes:
    """Sign per RFC 7518 §3 with a free choice of key and alg (mismatches are intentional).

    ECDSA signatures are the fixed-length R‖S form of RFC 7518 §3.4; the hash follows ``alg``
    even when the curve does not (DPOP-RS-12(b): ES384 over a P-256 key).
    """
    if alg == "none":
        return b""
    if alg.startswith("HS"):
        assert isinstance(key, bytes)
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        return hmac.new(key, signing_input, digest).digest()
    assert not isinstance(key, bytes)
    hash_alg: hashes.HashAlgorithm = {"256": hashes.SHA256(), "384": hashes.SHA384(),
                                      "512": hashes.SHA512(), "56K": hashes.SHA256()}.get(
        alg[-3:], hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ec_raw(key.sign(signing_input, ec.ECDSA(hash_alg)), (key.curve.key_size + 7) // 8)
    if isinstance(key, rsa.RSAPrivateKey):
        if alg.startswith("PS"):
            pad: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        else:
            pad = padding.PKCS1v15()
        return key.sign(signing_input, pad, hash_alg)
    return key.sign(signing_input)


def compact_jws(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes,
                key: PrivateKey | bytes | None, alg: str | None = None) -> str:
    """RFC 7515 §7.1 compact serialisation; ``alg`` defaults to the header's ``alg``.

    ``header``/``payload`` may be raw bytes so that non-JSON or non-object segments can be made.
    """
    h = header if isinstance(header, bytes) else json_bytes(dict(header))
    p = payload if isinstance(payload, bytes) else json_bytes(dict(payload))
    signing_input = f"{b64u(h)}.{b64u(p)}".encode("ascii")
    if alg is None:
        alg = header.get("alg", "none") if isinstance(header, Mapping) else "none"
    sig = b"" if key is None else raw_sign(alg, key, signing_input)
    return f"{signing_input.decode('ascii')}.{b64u(sig)}"


def apply_overrides(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``overrides`` into ``base``; values equal to REMOVE delete the member."""
    out = dict(base)
    for k, v in (overrides or {}).items():
        if v is REMOVE:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def natural_alg(key: PrivateKey) -> str:
    """The JWS alg that a key signs with in the fixtures (ES256, PS256, EdDSA)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp256k1": "ES256K"}[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    return "EdDSA"


# --------------------------------------------------------------------------- certificates


def make_cert(key: PrivateKey, common_name: str, serial: int | None = None) -> x509.Certificate:
    """A self-signed client certificate (docs/conformance-cases.md, Notation CERT1/CERT1b/CERT2)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


CERT_FORMATS = ("escaped-pem", "base64-der", "xfcc", "rfc9440")


def encode_cert_header(cert: x509.Certificate, fmt: str) -> str:
    """Encode a certificate as a proxy puts it in a header (RFC 8705 §6.5; RFC 9440 §2).

    ``escaped-pem`` = nginx ``$ssl_client_escaped_cert``; ``base64-der`` = Traefik;
    ``xfcc`` = Envoy ``x-forwarded-client-cert``; ``rfc9440`` = ``Client-Cert: :<b64 DER>:``.
    """
    der = cert_der(cert)
    if fmt == "escaped-pem":
        return urllib.parse.quote(cert_pem(cert), safe="")
    if fmt == "base64-der":
        return base64.b64encode(der).decode("ascii")
    if fmt == "xfcc":
        return f'Hash={hashlib.sha256(der).hexdigest()};Cert="{urllib.parse.quote(cert_pem(cert), safe="")}"'
    if fmt == "rfc9440":
        return f":{base64.b64encode(der).decode('ascii')}:"
    raise ValueError(f"unknown certificate header format {fmt!r}")


def pem_spaces(cert: x509.Certificate) -> str:
    """PEM with line breaks replaced by spaces (MTLS-RS-04(b), docs/conformance-cases.md)."""
    return cert_pem(cert).strip().replace("\n", " ")


def pem_tabbed(cert: x509.Certificate) -> str:
    """Legacy nginx ``$ssl_client_cert``: continuation lines start with a TAB (MTLS-RS-04(c))."""
    return cert_pem(cert).strip().replace("\n", "\n\t")


# --------------------------------------------------------------------------- fixtures


def uuid4() -> str:
    return str(uuid.uuid4())


def now() -> int:
    """The real clock: a black-box suite cannot inject time, it offsets ``iat``/``exp`` from now."""
    return int(time.time())


@dataclass
class Fixtures:
    """The docs/conformance-cases.md, Notation keys, certificates and token defaults, generated fresh for one run."""

    issuer: str
    audience: str
    k1: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    k2: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    kr: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ke: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    as1: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    as2: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    attacker: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    c1: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    c2: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        # The issuer's keys are new every run, so their kids are too: a verifier still caching the
        # previous run's JWKS then sees an unknown kid and refreshes (RFC 9068 §4, rule R-13) instead
        # of failing the new run's signatures under a stale key with the same kid.
        run = secrets.token_hex(3)
        self.kids = {"as-1": f"as-1.{run}", "as-2": f"as-2.{run}"}
        self.cert1 = make_cert(self.c1, "conformance-client-1", serial=1001)
        self.cert1b = make_cert(self.c1, "conformance-client-1", serial=1002)
        self.cert2 = make_cert(self.c2, "conformance-client-2", serial=2001)

    # ---- keys by name (docs/conformance-cases.md, Notation)
    def key(self, name: str) -> PrivateKey:
        keys: dict[str, PrivateKey] = {"K1": self.k1, "K2": self.k2, "KR": self.kr, "KE": self.ke, "as-1": self.as1,
                                       "as-2": self.as2, "attacker": self.attacker}
        return keys[name]

    def jwks(self, rotated: bool) -> dict[str, Any]:
        """The issuer's JWKS: as-1, plus as-2 after the rotation switch (JWT-RS-09, docs/conformance-cases.md)."""
        keys = [dict(public_jwk(self.as1), kid=self.kid("as-1"), use="sig", alg="RS256")]
        if rotated:
            keys.append(dict(public_jwk(self.as2), kid=self.kid("as-2"), use="sig", alg="RS256"))
        return {"keys": keys}

    def kid(self, name: str) -> str:
        """The ``kid`` this run's issuer serves for key ``as-1`` / ``as-2`` (other names: as given)."""
        return self.kids.get(name, name)

    def jkt(self, name: str = "K1") -> str:
        return thumbprint(public_jwk(self.key(name)))

    def cert_thumb(self, cert: x509.Certificate | None = None) -> str:
        return x5t_s256(cert_der(cert or self.cert1))

    # ---- access tokens (RFC 9068 §2.2)
    def token_claims(self, **overrides: Any) -> dict[str, Any]:
        t0 = now()
        base = {"iss": self.issuer, "aud": self.audience, "sub": "u1", "client_id": "c1",
                "iat": t0, "exp": t0 + 600, "jti": uuid4(), "scope": "read"}
        return apply_overrides(base, overrides)

    def access_token(self, *, bind: str | None = None, header: Mapping[str, Any] | None = None,
                     signer: str = "as-1", alg: str | None = None, **claims: Any) -> str:
        """AT_B (``bind=None``), AT_D (``bind="jkt"``) or AT_M (``bind="x5t"``), with overrides."""
        body = self.token_claims(**claims)
        if bind == "jkt":
            body.setdefault("cnf", {"jkt": self.jkt("K1")})
        elif bind == "x5t":
            body.setdefault("cnf", {"x5t#S256": self.cert_thumb()})
        hdr = apply_overrides({"typ": "at+jwt", "alg": "RS256", "kid": self.kid(signer)}, header)
        key = self.key(signer)
        return compact_jws(hdr, body, None if hdr.get("alg") == "none" else key, alg or hdr.get("alg"))

    # ---- DPoP proofs (RFC 9449 §4.2)
    def proof(self, *, htm: str = "GET", htu: str, token: str | None = None, key: str = "K1",
              alg: str | None = None, iat_offset: int = 0, header: Mapping[str, Any] | None = None,
              claims: Mapping[str, Any] | None = None, jwk: Any = None,
              sign_key: PrivateKey | bytes | None = None, sign_alg: str | None = None) -> str:
        """Spec §0.1 ``P()``: ES256 by K1, fresh jti, iat=now+offset, ath when a token is given."""
        k = self.key(key)
        body: dict[str, Any] = {"jti": uuid4(), "htm": htm, "htu": htu, "iat": now() + iat_offset}
        if token is not None:
            body["ath"] = ath(token)
        body = apply_overrides(body, claims)
        use_alg = alg or natural_alg(k)
        hdr = apply_overrides({"typ": "dpop+jwt", "alg": use_alg,
                               "jwk": public_jwk(k) if jwk is None else jwk}, header)
        return compact_jws(hdr, body, sign_key if sign_key is not None else k, sign_alg or use_alg)


def random_opaque_token() -> str:
    """An opaque (non-JWT) access token made of token68 characters (RFC 6750 §2.1)."""
    return "op_" + secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- checking what an AS issued


def _jwk_public_key(jwk: Mapping[str, Any]) -> Any:
    """A ``cryptography`` public key from an RSA, EC (P-256/384/521) or OKP Ed25519 JWK."""
    kty = jwk.get("kty")
    if kty == "RSA":
        return rsa.RSAPublicNumbers(int.from_bytes(b64u_decode(jwk["e"]), "big"),
                                    int.from_bytes(b64u_decode(jwk["n"]), "big")).public_key()
    if kty == "EC":
        curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[jwk["crv"]]
        return ec.EllipticCurvePublicNumbers(int.from_bytes(b64u_decode(jwk["x"]), "big"),
                                             int.from_bytes(b64u_decode(jwk["y"]), "big"), curve).public_key()
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(jwk["x"]))
    raise ValueError(f"unsupported key type {kty}")


def verify_compact(token: str, jwks: Mapping[str, Any]) -> str | None:
    """None if ``token`` is a compact JWS that verifies with the key its ``kid`` names in ``jwks``.

    Written on ``cryptography`` alone (RFC 7515 §5.2, RFC 7518 §3) so that judging an issued access
    token never reuses the JOSE library the verifier under test is built on. Returns a short reason.
    """
    try:
        head_b64, payload_b64, sig_b64 = token.split(".")
        header = json.loads(b64u_decode(head_b64))
        sig = b64u_decode(sig_b64)
    except ValueError:
        return "not a compact JWS"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    alg, kid = header.get("alg"), header.get("kid")
    candidates = [k for k in jwks.get("keys", []) if isinstance(k, dict) and (kid is None or k.get("kid") == kid)]
    if not candidates:
        return f"no key with kid {kid!r} in jwks_uri"
    signing_input = f"{head_b64}.{payload_b64}".encode("ascii")
    hashes_by_size = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
    for jwk in candidates:
        try:
            key = _jwk_public_key(jwk)
            if isinstance(alg, str) and alg[:2] in ("RS", "PS") and isinstance(key, rsa.RSAPublicKey):
                h = hashes_by_size[alg[2:]]
                pad: padding.AsymmetricPadding = (padding.PKCS1v15() if alg.startswith("RS") else
                                                  padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size))
                key.verify(sig, signing_input, pad, h)
            elif isinstance(alg, str) and alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
                size = (key.curve.key_size + 7) // 8
                if len(sig) != 2 * size:
                    return "ECDSA signature is not raw R||S"
                der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
                key.verify(der, signing_input, ec.ECDSA(hashes_by_size[alg[2:]]))
            elif alg in ("EdDSA", "Ed25519") and isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(sig, signing_input)
            else:
                continue
            return None
        except (InvalidSignature, KeyError, ValueError):
            continue
    return f"signature ({alg}) does not verify with jwks_uri"
