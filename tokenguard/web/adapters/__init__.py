"""Proxy adapters: rebuild the original request from what nginx, Caddy, Traefik or Envoy send.

Forwarded headers and the client-certificate header are believed only when the sub-request comes
from ``trusted_proxies``; from anywhere else the request is judged as it arrived (so a forged
``X-Original-URI`` or certificate header gains nothing). The DPoP ``htu`` is compared with the
external URL built here, never with the sub-request's own URL (RFC 9449 §4.3 (9), spec R-03).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tokenguard.core.verifier import AuthRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1024)
def _trusted(networks: tuple[Network, ...], remote_addr: str) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr.split("%")[0])
    except ValueError:
        return False
    return any(address in network for network in networks)


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _values(environ: Mapping[str, Any], header: str) -> tuple[str, ...]:
    """All values of a header. WSGI servers fold repeated fields into one, joined by commas (R-12)."""
    raw = environ.get(_environ_key(header))
    if raw is None:
        return ()
    return tuple(part.strip() for part in str(raw).split(","))


def _first(environ: Mapping[str, Any], header: str) -> str | None:
    raw = environ.get(_environ_key(header))
    if raw is None:
        return None
    return str(raw).split(",")[0].strip() or None


@dataclass(frozen=True)
class ProxyAdapter:
    trusted_proxies: tuple[Network, ...]
    public_url: str | None = None
    cert_header: str = "X-SSL-Client-Cert"
    original_method_header: str = "X-Original-Method"
    original_uri_header: str = "X-Original-URI"

    @classmethod
    def from_config(cls, server: Mapping[str, Any], mtls: Mapping[str, Any], proxy: Mapping[str, Any]
                    ) -> ProxyAdapter:
        return cls(trusted_proxies=tuple(ipaddress.ip_network(c, strict=False) for c in server["trusted_proxies"]),
                   public_url=server["public_url"].rstrip("/") or None, cert_header=mtls["cert_header"],
                   original_method_header=proxy["original_method_header"],
                   original_uri_header=proxy["original_uri_header"])

    def trusts(self, remote_addr: str | None) -> bool:
        """Whether the peer is a trusted proxy (cached: the same few proxies connect all day)."""
        return _trusted(self.trusted_proxies, remote_addr or "")

    def _base_url(self, environ: Mapping[str, Any], trusted: bool) -> str:
        """scheme://host[:port] of the external request."""
        if self.public_url:
            return self.public_url
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "localhost")
        port = None
        if trusted:
            scheme = (_first(environ, "X-Forwarded-Proto") or scheme).lower()
            forwarded_host = _first(environ, "X-Forwarded-Host")
            if forwarded_host:
                host = forwarded_host
            port = _first(environ, "X-Forwarded-Port")
        if port and not host.endswith("]") and ":" not in host:
            host = f"{host}:{port}"
        return f"{scheme}://{host}"

    def auth_request(self, environ: Mapping[str, Any]) -> AuthRequest:
        """nginx ``auth_request`` (``X-Original-*``), Caddy / Traefik (``X-Forwarded-Method/Uri``)."""
        trusted = self.trusts(environ.get("REMOTE_ADDR"))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        if trusted:
            method = (_first(environ, self.original_method_header) or _first(environ, "X-Forwarded-Method")
                      or method)
            uri = environ.get(_environ_key(self.original_uri_header)) or environ.get(
                "HTTP_X_FORWARDED_URI") or uri
        return self._request(environ, trusted, method, str(uri))

    def envoy(self, environ: Mapping[str, Any], prefix: str = "/envoy") -> AuthRequest:
        """Envoy ``ext_authz`` HTTP service: the original method, path under ``path_prefix``, and Host."""
        trusted = self.trusts(environ.get("REMOTE_ADDR"))
        uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        if uri.startswith(prefix):
            uri = uri[len(prefix):] or "/"
        return self._request(environ, trusted, str(environ.get("REQUEST_METHOD", "GET")), uri)

    def _request(self, environ: Mapping[str, Any], trusted: bool, method: str, uri: str) -> AuthRequest:
        if not uri.startswith("/"):
            uri = "/" + uri
        url = self._base_url(environ, trusted) + uri
        cert = environ.get(_environ_key(self.cert_header)) if trusted else None
        authorization = environ.get("HTTP_AUTHORIZATION")
        return AuthRequest(method=method, url=url, authorization=() if authorization is None else (authorization,),
                           dpop=_values(environ, "DPoP"), client_cert=cert)
