"""Private JWKs for DPoP: generate, read, write (0600), and their RFC 7638 thumbprints.

Shared with the mock IdP, which signs with keys made here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokenguard.client.errors import ClientError
from tokenguard.core.b64 import b64url_encode
from tokenguard.core.jwk import THUMBPRINT_MEMBERS, default_alg, key_fits_alg, public_jwk, thumbprint

#: The algorithms ``keygen`` offers (RFC 9449 §4.2 forbids MAC algorithms and ``none``). ``Ed25519`` is
#: RFC 9864's fully-specified name; ``EdDSA`` its deprecated polymorphic one, for servers that know no other.
KEY_ALGS = ("ES256", "Ed25519", "EdDSA", "RS256", "PS256")


def _int_b64(value: int, length: int | None = None) -> str:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def generate_jwk(alg: str, *, rsa_bits: int = 2048) -> dict[str, Any]:
    """A new private JWK for ``alg`` with ``alg`` and ``kid`` (= its RFC 7638 thumbprint) set."""
    if alg == "ES256":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        numbers = ec_key.private_numbers()
        jwk: dict[str, Any] = {"kty": "EC", "crv": "P-256", "x": _int_b64(numbers.public_numbers.x, 32),
                               "y": _int_b64(numbers.public_numbers.y, 32), "d": _int_b64(numbers.private_value, 32)}
    elif alg in ("Ed25519", "EdDSA"):
        from cryptography.hazmat.primitives import serialization as ser

        ed_key = ed25519.Ed25519PrivateKey.generate()
        raw_private = ed_key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
        raw_public = ed_key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw_public), "d": b64url_encode(raw_private)}
    elif alg in ("RS256", "PS256"):
        if rsa_bits < 2048:
            raise ClientError("RSA keys must have at least 2048 bits")
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        priv = rsa_key.private_numbers()
        pub = priv.public_numbers
        jwk = {"kty": "RSA", "n": _int_b64(pub.n), "e": _int_b64(pub.e), "d": _int_b64(priv.d),
               "p": _int_b64(priv.p), "q": _int_b64(priv.q), "dp": _int_b64(priv.dmp1),
               "dq": _int_b64(priv.dmq1), "qi": _int_b64(priv.iqmp)}
    else:
        raise ClientError(f"unsupported algorithm {alg!r}: choose one of {', '.join(KEY_ALGS)}")
    jwk["alg"] = alg
    jwk["kid"] = thumbprint(jwk)
    return jwk


def read_text(source: str, what: str) -> str:
    """Text from ``-`` (stdin), ``@path`` or a plain path."""
    if source == "-":
        return sys.stdin.read()
    path = source[1:] if source.startswith("@") else source
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ClientError(f"{what} file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def parse_jwk(text: str, source: str, *, private: bool) -> dict[str, Any]:
    """Parse one JWK (or a JWK Set holding exactly one key) and check that it is usable."""
    if text.lstrip().startswith("-----BEGIN"):
        convert = (f"convert it once: tokenguard keygen --from-pem {source} --out key.jwk" if "PRIVATE KEY" in text
                   else "tokenguard needs the private key (a JWK; from a PEM private key: tokenguard keygen "
                        "--from-pem FILE --out key.jwk)")
        raise ClientError(f"{source}: this is a PEM file, and tokenguard reads keys as JWK (JSON); {convert}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(value, dict) and isinstance(value.get("keys"), list) and len(value["keys"]) == 1:
        value = value["keys"][0]
    if not isinstance(value, dict) or "kty" not in value:
        raise ClientError(f"{source}: not a JWK (a JSON object with a kty member)")
    kty = value.get("kty")
    if kty not in THUMBPRINT_MEMBERS:
        raise ClientError(f"{source}: unsupported key type kty={kty!r}")
    missing = [m for m in THUMBPRINT_MEMBERS[kty] if not isinstance(value.get(m), str)]
    if missing:
        raise ClientError(f"{source}: JWK lacks {', '.join(missing)}")
    if private:
        if kty == "oct":
            raise ClientError(f"{source}: a symmetric key cannot sign DPoP proofs (RFC 9449 §4.2)")
        if "d" not in value:
            raise ClientError(f"{source}: this is a public key; DPoP proofs need the private JWK (with d)")
        try:
            from joserfc import jwk as jose_jwk

            jose_jwk.import_key(dict(value))
        except Exception as exc:  # joserfc raises assorted errors for bad key material
            raise ClientError(f"{source}: invalid private key ({type(exc).__name__})") from None
    return value


def jwk_from_pem(text: str, source: str, alg: str | None = None) -> dict[str, Any]:
    """A PEM private key (PKCS#8 or traditional) as a private JWK with ``alg`` and ``kid`` (its thumbprint)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    try:
        private = load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise ClientError(f"{source}: the PEM key is encrypted; decrypt it first "
                          "(openssl pkey -in KEY.pem -out plain.pem)") from None
    except ValueError as exc:
        raise ClientError(f"{source}: not a PEM private key ({str(exc).splitlines()[0][:80]})") from None
    kind: type[ECKey | RSAKey | OKPKey] | None = (
        ECKey if isinstance(private, ec.EllipticCurvePrivateKey) else RSAKey if isinstance(private, rsa.RSAPrivateKey)
        else OKPKey if isinstance(private, ed25519.Ed25519PrivateKey) else None)
    if kind is None:
        raise ClientError(f"{source}: a {type(private).__name__.removeprefix('_')} cannot sign DPoP proofs here; "
                          "use an EC P-256, Ed25519 or RSA (>= 2048 bits) key")
    if isinstance(private, rsa.RSAPrivateKey) and private.key_size < 2048:
        raise ClientError(f"{source}: RSA keys must have at least 2048 bits, this one has {private.key_size}")
    jwk: dict[str, Any] = dict(kind.import_key(text).as_dict(private=True))
    signs = alg or default_alg(jwk)
    if not key_fits_alg(jwk, signs):
        raise ClientError(f"{source}: this {jwk.get('crv') or jwk['kty']} key cannot sign {signs}")
    jwk["alg"] = signs
    jwk["kid"] = thumbprint(jwk)
    return jwk


def load_private_jwk(path: str) -> dict[str, Any]:
    """The private JWK in ``path`` (``-`` for stdin)."""
    return parse_jwk(read_text(path, "key"), path, private=True)


def key_alg(jwk: Mapping[str, Any]) -> str:
    """The JWS alg a key signs with: its ``alg`` member, else the usual one for its type."""

    return str(jwk.get("alg") or default_alg(jwk))


def write_private_jwk(path: str, jwk: Mapping[str, Any], *, force: bool = False) -> None:
    """Write a private JWK readable by its owner only (0600); refuse to overwrite unless ``force``."""
    target = Path(path)
    text = json.dumps(jwk, indent=2) + "\n"
    if target.is_dir():
        raise ClientError(f"{path} is a directory")
    if target.exists() and not force:
        raise ClientError(f"{path} already exists; use --force to overwrite it")
    try:
        fd, tmp = tempfile.mkstemp(dir=str(target.parent or Path(".")), prefix=".keygen-")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o600)
            if force:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)  # atomic "create, never overwrite"
                os.unlink(tmp)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except FileExistsError:
        raise ClientError(f"{path} already exists; use --force to overwrite it") from None
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror or exc}") from None


def public_key_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint of a JWK's public part (a private JWK's private members never enter it)."""
    return thumbprint(public_jwk(jwk))
