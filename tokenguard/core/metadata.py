"""Authorization server metadata (RFC 8414): where it is, and that it is the issuer's own.

One implementation for the verifier (an issuer's ``jwks_uri``) and the client (its token endpoint);
each hands in its own way of fetching JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

FetchJson = Callable[[str], Mapping[str, Any]]


class FetchError(Exception):
    """An HTTP fetch failed (network, status, or not a JSON object); the message names the URL."""


def metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 (well-known inserted before the issuer's path), then OIDC Discovery's URL."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    base = f"{parts.scheme}://{parts.netloc}"
    return [f"{base}/.well-known/oauth-authorization-server{path}",
            f"{base}{path}/.well-known/openid-configuration"]


def discover(issuer: str, fetch: FetchJson) -> Mapping[str, Any]:
    """The first metadata document whose ``issuer`` is byte-identical to ``issuer`` (RFC 8414 §3.3).

    Raises :class:`FetchError` naming what went wrong at each URL.
    """
    errors = []
    for url in metadata_urls(issuer):
        try:
            metadata = fetch(url)
        except FetchError as exc:
            errors.append(str(exc))
            continue
        if metadata.get("issuer") != issuer:
            errors.append(f"metadata at {url} is for issuer {metadata.get('issuer')!r}, not {issuer!r} "
                          "(RFC 8414 §3.3: the issuer must be byte-identical)")
            continue
        return metadata
    raise FetchError("; ".join(errors))
