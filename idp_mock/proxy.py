"""What a trusted TLS-terminating proxy tells the IdP: the URL the client actually called and its
client certificate (RFC 8705 §2 behind a proxy; contract "Inputs"). Headers from any peer outside
``trusted_proxies`` are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import quote

from flask import Request

from tokenguard.web.certs import read_client_cert

CERT_HEADER = "X-SSL-Client-Cert"
CERT_FORMAT = "escaped-pem"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class ProxyTrust:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)

    def trusted(self, request: Request) -> bool:
        try:
            peer = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
        except ValueError:
            return False
        return any(peer in net for net in self.networks)

    def external_url(self, request: Request) -> str:
        """``scheme://host[:port]/path`` as the client called it (no query): RFC 9449 §4.3 (9) ``htu``."""
        path = quote(request.script_root + request.path, safe="/:@!$&'()*+,;=-._~%")
        scheme, host = request.scheme, request.host
        if self.trusted(request) and request.headers.get("X-Forwarded-Proto"):
            scheme = request.headers["X-Forwarded-Proto"].split(",")[0].strip().lower()
            host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
            port = request.headers.get("X-Forwarded-Port", "").split(",")[0].strip()
            if port and not host.endswith("]") and ":" not in host and port != _DEFAULT_PORTS.get(scheme):
                host = f"{host}:{port}"
        return f"{scheme}://{host}{path}"

    def client_cert(self, request: Request) -> bytes | None:
        """DER of the client certificate the proxy saw, or None. Raises ``CertificateError`` if garbled."""
        if not self.trusted(request):
            return None
        return read_client_cert(request.headers.get(CERT_HEADER), CERT_FORMAT)

    def raw_cert_header(self, request: Request) -> str | None:
        return request.headers.get(CERT_HEADER) if self.trusted(request) else None
