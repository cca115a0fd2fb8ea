"""Client certificates from proxy headers (RFC 8705 §3.1, R-07): formats, absence, garbage."""

from __future__ import annotations

import base64
import hashlib
import random
import urllib.parse

import pytest

from tokenguard.core.bindings.mtls import x5t_s256
from tokenguard.web.certs import FORMATS, CertificateError, read_client_cert

from .helpers import Keys, b64u, cert_der, cert_pem, escaped_pem


@pytest.fixture(scope="module")
def der(keys: Keys) -> bytes:
    return cert_der(keys.CERT1)


def _values(keys: Keys) -> dict[str, tuple[str, str]]:
    pem = cert_pem(keys.CERT1)
    b64 = base64.b64encode(cert_der(keys.CERT1)).decode()
    return {
        "escaped-pem": ("escaped-pem", escaped_pem(keys.CERT1)),
        "escaped-pem-keeping-plus-and-slash": ("escaped-pem", urllib.parse.quote(pem, safe="+/=")),
        "plain-pem": ("escaped-pem", pem),
        "pem-spaces-for-newlines": ("escaped-pem", pem.strip().replace("\n", " ")),
        "legacy-tab-continued-pem": ("escaped-pem", "\n\t".join(pem.strip().split("\n")) + "\n"),
        "base64-der": ("base64-der", b64),
        "base64-der-url-escaped": ("base64-der", urllib.parse.quote(b64, safe="")),
        "xfcc-simple": ("xfcc", f'Cert="{escaped_pem(keys.CERT1)}"'),
        "xfcc-quoted-values-with-separators": (
            "xfcc", 'By=spiffe://proxy;Hash=abcdef;Subject="CN=client-1,O=Acme;Inc,OU=a\\"b";'
                    f'Cert="{escaped_pem(keys.CERT1)};,";URI=spiffe://client'),
        "xfcc-cert-not-last": ("xfcc", f'Cert="{escaped_pem(keys.CERT1)}";Subject="a;b,c"'),
        "rfc9440": ("rfc9440", f":{b64}:"),
    }


@pytest.mark.parametrize("case", [
    "escaped-pem", "escaped-pem-keeping-plus-and-slash", "plain-pem", "pem-spaces-for-newlines",
    "legacy-tab-continued-pem", "base64-der", "base64-der-url-escaped", "xfcc-simple",
    "xfcc-quoted-values-with-separators", "xfcc-cert-not-last", "rfc9440"])
def test_formats_read_the_same_der(keys: Keys, der: bytes, case: str) -> None:
    fmt, value = _values(keys)[case]
    assert read_client_cert(value, fmt) == der


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", [None, "", "(null)", "  (null) ", "-"])
def test_absent_certificate(fmt: str, value: str | None) -> None:
    assert read_client_cert(value, fmt) is None


def test_xfcc_without_cert_element_is_absent() -> None:
    assert read_client_cert('By=spiffe://a;Hash=abc;Subject="CN=x"', "xfcc") is None


def test_xfcc_several_hops_refused(keys: Keys) -> None:
    value = f'Cert="{escaped_pem(keys.CERT1)}",Cert="{escaped_pem(keys.CERT2)}"'
    with pytest.raises(CertificateError):
        read_client_cert(value, "xfcc")


@pytest.mark.parametrize("fmt,value", [
    ("escaped-pem", "-----BEGIN CERTIFICATE-----garbage"),
    ("escaped-pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
    ("escaped-pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----"),
    ("escaped-pem", "hello"),
    ("base64-der", "AAAA"),
    ("base64-der", "not base64 at all!"),
    ("xfcc", 'Cert="unterminated'),
    ("xfcc", 'Cert="-----BEGIN CERTIFICATE-----%0AAAAA%0A-----END CERTIFICATE-----"'),
    ("rfc9440", "AAAA"),
    ("rfc9440", ":!!:"),
    ("rfc9440", "::"),
    ("escaped-pem", "x" * 20000),
])
def test_garbage_is_certificate_error(fmt: str, value: str) -> None:
    with pytest.raises(CertificateError):
        read_client_cert(value, fmt)


def test_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        read_client_cert("x", "pkcs12")


def test_x5t_s256(der: bytes) -> None:
    assert x5t_s256(der) == b64u(hashlib.sha256(der).digest())
    assert "=" not in x5t_s256(der) and len(x5t_s256(der)) == 43


def test_property_random_input_only_certificate_error_or_none(keys: Keys) -> None:
    """Random bytes, strings and mutations of valid headers: None, valid DER, or CertificateError."""
    rng = random.Random(9440)
    valid = [v for _, v in _values(keys).values()]
    alphabet = "ABCDEFabcdef0123456789+/=-_:;,\"%\\ \t\n()-----BEGIN CERTIFICATE-----END"
    samples: list[str] = []
    for _ in range(300):
        samples.append(bytes(rng.randrange(256) for _ in range(rng.randrange(64))).decode("latin-1"))
        samples.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(120))))
        base = rng.choice(valid)
        cut = rng.randrange(len(base))
        samples.append(base[:cut])
        samples.append(base[:cut] + rng.choice(alphabet) + base[cut + 1:])
    for value in samples:
        for fmt in FORMATS:
            try:
                result = read_client_cert(value, fmt)
            except CertificateError:
                continue
            assert result is None or isinstance(result, bytes), (fmt, value)
