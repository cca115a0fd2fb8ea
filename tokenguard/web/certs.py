"""Client certificates handed over by a TLS-terminating proxy, and RFC 8705 §3.1 ``x5t#S256``.

The proxy passes the certificate in one header, in one of four conventions (contract, "Inputs"):

* ``escaped-pem``: nginx ``$ssl_client_escaped_cert`` (URL-encoded PEM). Also accepted in this mode:
  plain PEM, PEM whose line breaks became spaces, and legacy ``$ssl_client_cert`` (TAB-continued).
* ``base64-der``: bare base64 of the DER (Traefik ``X-Forwarded-Tls-Client-Cert``, Caddy placeholders).
* ``xfcc``: Envoy ``x-forwarded-client-cert``, the ``Cert="<URL-encoded PEM>"`` element.
* ``rfc9440``: ``Client-Cert: :<base64 DER>:`` (RFC 9440 §2.2, a structured-field byte sequence).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import unquote

from cryptography import x509

MAX_HEADER_LENGTH = 16384
_ABSENT = {"", "(null)", "-", "null"}
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class CertificateError(ValueError):
    """A certificate header is present but does not hold one well-formed X.509 certificate."""


def _der_from_base64(text: str) -> bytes:
    compact = "".join(text.split())
    if not compact or not _B64.match(compact):
        raise CertificateError("certificate is not base64")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateError("certificate is not base64") from exc
    try:
        x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError("not an X.509 certificate") from exc
    return der


def _der_from_pem(text: str) -> bytes:
    match = _PEM.search(text)
    if match is None:
        raise CertificateError("no PEM certificate")
    return _der_from_base64(match.group(1))


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)  # keep the raw text: the element is split again on ";"
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise CertificateError("unterminated quoted string")
    parts.append("".join(current))
    return parts


def _der_from_xfcc(value: str) -> bytes | None:
    elements = _split_outside_quotes(value, ",")
    if len(elements) != 1:
        # Several hops' details: only one proxy should speak for the client (Envoy SANITIZE_SET).
        raise CertificateError("x-forwarded-client-cert has more than one element")
    for pair in _split_outside_quotes(elements[0], ";"):
        name, _, raw = pair.strip().partition("=")
        if name.strip().lower() == "cert":
            raw = raw.strip()
            if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.S)  # RFC 9110 quoted-pair
            return _der_from_pem(unquote(raw))
    return None


#: Header conventions by ``mtls.cert_format`` name: each turns a present, non-empty value into DER.
FORMATS: dict[str, Callable[[str], bytes | None]] = {}


def register_format(name: str) -> Callable[[Callable[[str], bytes | None]], Callable[[str], bytes | None]]:
    def add(reader: Callable[[str], bytes | None]) -> Callable[[str], bytes | None]:
        FORMATS[name] = reader
        return reader

    return add


@register_format("escaped-pem")
def _escaped_pem(value: str) -> bytes | None:
    text = unquote(value)
    # Some proxies hand over the bare base64 DER in the same header
    # (docs/conformance-cases.md, MTLS-RS-04 (d)).
    return _der_from_pem(text) if "-----BEGIN" in text else _der_from_base64(text)


@register_format("base64-der")
def _base64_der(value: str) -> bytes | None:
    return _der_from_base64(unquote(value).split(",")[0])


register_format("xfcc")(_der_from_xfcc)


@register_format("rfc9440")
def _rfc9440(value: str) -> bytes | None:
    if len(value) < 3 or value[0] != ":" or value[-1] != ":":
        raise CertificateError("Client-Cert is not a structured-field byte sequence")
    return _der_from_base64(value[1:-1])


def read_client_cert(value: str | None, fmt: str) -> bytes | None:
    """DER bytes of the certificate in a proxy header; None when no certificate was presented.

    Raises :class:`CertificateError` for a header that is present but is not one certificate.
    """
    if value is None:
        return None
    value = value.strip()
    if value in _ABSENT:
        return None
    if len(value) > MAX_HEADER_LENGTH:
        raise CertificateError("certificate header too long")
    reader = FORMATS.get(fmt)
    if reader is None:
        raise ValueError(f"unknown certificate format {fmt!r}")
    return reader(value)
