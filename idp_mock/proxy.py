"""What a trusted TLS-terminating proxy tells the IdP: the URL the client actually called and its
client certificate (RFC 8705 §2 behind a proxy; contract "Inputs"). Headers from any peer outside
``trusted_proxies`` are ignored. The reading itself is tokenguard's (:mod:`tokenguard.web.adapters.forwarded`).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Request

from tokenguard.core.errors import OAuthError
from tokenguard.core.request import ClientCertificate, Target
from tokenguard.web.adapters.forwarded import ForwardedRequestReader
from tokenguard.web.adapters.forwarded import ProxyTrust as _Trust
from tokenguard.web.environ import incoming_from_environ

CERT_HEADER = "X-SSL-Client-Cert"
CERT_FORMAT = "escaped-pem"


class ProxyTrust:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self.reader = ForwardedRequestReader(_Trust.from_cidrs(trusted_proxies), cert_header=CERT_HEADER,
                                             cert_format=CERT_FORMAT)

    def trusted(self, request: Request) -> bool:
        return self.reader.trust.trusts(request.remote_addr)

    def target(self, request: Request) -> Target:
        """The request as the client called it (raises ``InvalidRequest`` for a framing that does not parse)."""
        incoming = incoming_from_environ(request.environ)
        return self.reader.target(incoming, self.trusted(request), incoming.target)

    def external_url(self, request: Request) -> str:
        """``scheme://host[:port]/path`` as the client called it (no query): RFC 9449 §4.3 (9) ``htu``.

        Empty when the (forwarded) host or target is not valid: then no ``htu`` or audience can match it.
        """
        try:
            return self.target(request).htu
        except OAuthError:
            return ""

    def certificate(self, request: Request) -> ClientCertificate | None:
        """The client certificate the proxy saw (``problem`` set when the header is garbled), or None."""
        return self.reader.client_cert(incoming_from_environ(request.environ), self.trusted(request))
