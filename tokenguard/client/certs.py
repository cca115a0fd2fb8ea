"""Client certificates as a client holds them: a PEM or DER file (the first certificate is the client's own)."""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography import x509

from tokenguard.client.errors import ClientError


def load_certificate(path: str) -> x509.Certificate:
    """The certificate in ``path`` (``-`` for stdin), PEM or DER; a one-line :class:`ClientError` otherwise."""
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ClientError(f"certificate file not found: {path}") from None
        except OSError as exc:
            raise ClientError(f"cannot read certificate file {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            if b"-----BEGIN CERTIFICATE-----" not in data:
                raise ValueError("PEM file holds no CERTIFICATE block")
            return x509.load_pem_x509_certificate(data)  # the first certificate: the client's own
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ClientError(f"{path}: not an X.509 certificate in PEM or DER ({exc})") from None
