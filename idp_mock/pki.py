"""Demo credentials for the built-in clients, created once in ``<state_dir>/demo/``.

A demo CA and a ``tls_client_auth`` client certificate it issued, a self-signed certificate for the
``self_signed_tls_client_auth`` client, and a private JWK for the ``private_key_jwt`` client. Kept on
disk so they survive restarts and can be handed to ``curl``, ``tokenguard token`` and the tests.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .keys import generate_jwk

MTLS_SUBJECT = "CN=mtls1,O=idp-mock demo,C=US"


def _name(cn: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US")] if cn == "mtls1" else []
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "idp-mock demo"),
              x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, san: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def ensure_demo_pki(state_dir: Path) -> Path:
    """Create the demo files if missing; returns the directory."""
    demo = state_dir / "demo"
    if (demo / "jwt1.jwk").exists():
        return demo
    demo.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "idp-mock demo"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "idp-mock demo client CA")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    _write(demo / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    _write(demo / "ca.key", _pem_key(ca_key), private=True)
    mtls_key = ec.generate_private_key(ec.SECP256R1())
    mtls = _cert(_name("mtls1"), mtls_key, ca_name, ca_key, ca=False, san="mtls1.client.test")
    _write(demo / "mtls1.crt", mtls.public_bytes(serialization.Encoding.PEM))
    _write(demo / "mtls1.key", _pem_key(mtls_key), private=True)
    self_key = ec.generate_private_key(ec.SECP256R1())
    self_name = _name("selfsigned1")
    self_cert = _cert(self_name, self_key, self_name, self_key, ca=False)
    _write(demo / "selfsigned1.crt", self_cert.public_bytes(serialization.Encoding.PEM))
    _write(demo / "selfsigned1.key", _pem_key(self_key), private=True)
    _write(demo / "jwt1.jwk", json.dumps(generate_jwk("ES256"), indent=1).encode(), private=True)
    return demo


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def x5c_jwks(cert: x509.Certificate) -> dict[str, Any]:
    """A JWK Set holding the certificate's public key and the certificate itself as ``x5c[0]``."""
    import base64

    from joserfc import jwk as jose_jwk

    key = jose_jwk.ECKey.import_key(cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    data = dict(key.as_dict(private=False))
    data["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return {"keys": [data]}
