"""RFC 3986 normalisation for the htu comparison (R-03), plus strict base64url and JWK import."""

from __future__ import annotations

import random

import pytest

from tokenguard.core.b64 import b64url_decode
from tokenguard.core.jwk import JWKError, import_public_key, key_fits_alg
from tokenguard.core.uri import URIError, normalize_target


@pytest.mark.parametrize("uri,expected", [
    ("https://api.test/resource", "https://api.test/resource"),
    ("HTTPS://API.TEST/resource", "https://api.test/resource"),
    ("https://api.test:443/resource", "https://api.test/resource"),
    ("http://api.test:80/x", "http://api.test/x"),
    ("http://api.test:443/x", "http://api.test:443/x"),
    ("https://api.test:8443/x", "https://api.test:8443/x"),
    ("https://api.test", "https://api.test/"),
    ("https://api.test/resource?x=1#frag", "https://api.test/resource"),
    ("https://api.test/%7Euser", "https://api.test/~user"),
    ("https://api.test/%7euser", "https://api.test/~user"),
    ("https://api.test/a%2fb", "https://api.test/a%2Fb"),
    ("https://api.test/a%2Fb", "https://api.test/a%2Fb"),
    ("https://api.test/%41%62", "https://api.test/Ab"),
    ("https://api.test/a/./b/../resource", "https://api.test/a/resource"),
    ("https://api.test/../../x", "https://api.test/x"),
    ("https://api.test/Resource", "https://api.test/Resource"),
    ("https://api.test/resource/", "https://api.test/resource/"),
    ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ("https://API.test:0443/x", "https://api.test/x"),
], ids=lambda v: v if v.startswith("http") or v.startswith("HTTP") else None)
def test_R03_normalisation(uri: str, expected: str) -> None:
    assert normalize_target(uri) == expected


@pytest.mark.parametrize("uri", [
    "/resource", "resource", "", ":::*;", "ftp://api.test/x", "https://u@api.test/x", "https://u:p@api.test/x",
    "https://api.test:99999/x", "https://api.test:port/x", "https:///x", "https://api.test/%zz", "https://api.test/%",
    "https://api.test/a b", 'https://api.test/"', "https://[::1/x", "https://api.test/\u00e9", "mailto:a@b",
    "https://api.test/" + "a" * 9000, 123, None, b"https://api.test/",
])
def test_R03_not_absolute_http_uri(uri: object) -> None:
    with pytest.raises(URIError):
        normalize_target(uri)


def test_uri_garbage_only_uri_error() -> None:
    rng = random.Random(3986)
    alphabet = "htps:/[]@%?#.:0123456789aAzZ~-_!$&'()*+,;=\\\" \t\x00\u00e9"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        if rng.random() < 0.5:
            text = rng.choice(("https://", "http://", "HTTPS://")) + text
        try:
            result = normalize_target(text)
        except URIError:
            continue
        assert result.startswith(("http://", "https://"))
        assert normalize_target(result) == result  # idempotent


@pytest.mark.parametrize("text", ["AB", "AQ", "AAB", "AAE", "A", "AB=", "A+", "A/", "A A"])
def test_b64url_strict(text: str) -> None:
    """Canonical base64url only: ``AB`` would decode like ``AA`` if unused bits were ignored."""
    if text in ("AQ", "AAE"):
        assert b64url_decode(text)
        return
    with pytest.raises(ValueError):
        b64url_decode(text)


@pytest.mark.parametrize("jwk", [
    {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
    {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
    {"kty": "OKP", "crv": "X25519", "x": "AA"},
    {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
    {"kty": "oct", "k": "AAAA"},
    {"kty": "EC", "crv": "P-256", "x": 1, "y": 2},
    {},
    [],
])
def test_jwk_import_refuses_bad_keys(jwk: object) -> None:
    with pytest.raises(JWKError):
        import_public_key(jwk)  # type: ignore[arg-type]


def test_key_fits_alg() -> None:
    assert key_fits_alg({"kty": "EC", "crv": "P-256"}, "ES256")
    assert not key_fits_alg({"kty": "EC", "crv": "P-256"}, "ES384")
    assert not key_fits_alg({"kty": "RSA"}, "ES256")
    assert key_fits_alg({"kty": "RSA"}, "PS256")
    assert key_fits_alg({"kty": "OKP", "crv": "Ed25519"}, "EdDSA")
    assert not key_fits_alg({"kty": "OKP", "crv": "X25519"}, "EdDSA")
    assert not key_fits_alg({"kty": "oct"}, "HS256")
