"""What a trusted proxy tells us about the original request: its external URL and the client certificate.

Forwarded headers and the client-certificate header are believed only when the sub-request comes from
``trusted_proxies``; from anywhere else the request is judged as it arrived (so a forged
``X-Original-URI`` or certificate header gains nothing). The DPoP ``htu`` is compared with the external
URL built here, never with the sub-request's own URL (RFC 9449 §4.3 (9); docs/rules.md, R-03). The
mock IdP uses the same reader behind its own TLS proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tokenguard.core.request import ClientCertificate, Target
from tokenguard.web.adapters import Incoming
from tokenguard.web.certs import CertificateError, read_client_cert

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=256)
def _trusted(networks: tuple[Network, ...], peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    return any(address in network for network in networks)


def split_host_port(authority: str) -> tuple[str, str | None]:
    """``host[:port]`` (IPv6 literals in brackets); the parts are validated by :meth:`Target.from_parts`."""
    if authority.startswith("["):
        end = authority.find("]") + 1
        if end == 0:
            return authority, None
        rest = authority[end:]
        return authority[:end], (rest[1:] if rest.startswith(":") else rest or None)
    host, sep, port = authority.rpartition(":")
    return (host, port) if sep else (authority, None)


@dataclass(frozen=True)
class ProxyTrust:
    """``trusted_proxies`` as networks, and the configured ``public_url`` override, if any."""

    networks: tuple[Network, ...]
    public_url: str | None = None

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str], public_url: str | None = None) -> ProxyTrust:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs), (public_url or "").rstrip("/") or None)

    def trusts(self, peer: str | None) -> bool:
        """Whether the peer is a trusted proxy (cached: the same few proxies connect all day)."""
        return _trusted(self.networks, peer or "")


@dataclass(frozen=True)
class ForwardedRequestReader:
    """The pieces every adapter shares: trust, the external origin, and the client certificate."""

    trust: ProxyTrust
    cert_header: str = "X-SSL-Client-Cert"
    cert_format: str = "escaped-pem"
    method_header: str = "X-Original-Method"  # nginx's names; Caddy/Traefik's X-Forwarded-* are read too
    uri_header: str = "X-Original-URI"

    def target(self, incoming: Incoming, trusted: bool, request_uri: str) -> Target:
        """The external target from the forwarded scheme, host and port, and the original request-URI."""
        if self.trust.public_url:
            origin = Target.parse(self.trust.public_url + "/")
            return Target.from_parts(origin.scheme, origin.host, origin.port, request_uri)
        scheme, authority, port = incoming.scheme, incoming.first("Host") or "localhost", None
        if trusted:
            scheme = incoming.first("X-Forwarded-Proto") or scheme
            authority = incoming.first("X-Forwarded-Host") or authority
            port = incoming.first("X-Forwarded-Port")
        host, own_port = split_host_port(authority)
        return Target.from_parts(scheme, host, own_port if own_port is not None else port, request_uri)

    def client_cert(self, incoming: Incoming, trusted: bool) -> ClientCertificate | None:
        """The certificate in the configured header, from a trusted proxy only."""
        if not trusted:
            return None
        values = incoming.headers.values(self.cert_header)
        if not values:
            return None
        try:
            der = read_client_cert(values[0], self.cert_format)
        except CertificateError as exc:
            return ClientCertificate(problem=str(exc))
        return None if der is None else ClientCertificate(der)

    def credentials(self, incoming: Incoming) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``Authorization`` as sent, and every ``DPoP`` value (a proof has no comma: folded lines split exactly)."""
        authorization = incoming.headers.values("Authorization")
        proofs = tuple(part.strip() for value in incoming.headers.values("DPoP") for part in value.split(","))
        return authorization, proofs
