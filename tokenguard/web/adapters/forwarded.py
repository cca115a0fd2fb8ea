"""What a trusted proxy tells us about the original request: its external URL and the client certificate.

Forwarded headers and the client-certificate header are believed only when the sub-request comes from
``trusted_proxies`` (or over ``listen = "unix:PATH"``, whose peer is the proxy); from anywhere else the
request is judged as it arrived (so a forged ``X-Original-URI`` or certificate header gains nothing).
The DPoP ``htu`` is compared with the external URL built here, never with the sub-request's own URL
(RFC 9449 §4.3 (9); docs/rules.md, R-03). The mock IdP uses the same reader behind its own TLS proxy.

Before anything is believed, :meth:`ForwardedRequestReader.admit` applies tokenguard's own limits to the
header block and refuses what cannot be read exactly: a field tokenguard trusts sent twice, an
underscore spelling of one (which a CGI-style upstream would read as the same field), an environ that
may hold process variables. Every refusal is a specific ``invalid_request``, never a guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from tokenguard.core.cache import BoundedCache
from tokenguard.core.errors import InvalidRequest
from tokenguard.core.request import ClientCertificate, Target
from tokenguard.web.adapters import Incoming
from tokenguard.web.certs import CertificateError, read_client_cert

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: tokenguard's own limits on the header block of a sub-request (``[server] max_header_bytes`` /
#: ``max_header_fields``). ``Authorization`` and ``DPoP`` are not counted: an oversized token is
#: ``invalid_token`` and an oversized or repeated proof ``invalid_dpop_proof``, judged by the core.
DEFAULT_MAX_HEADER_BYTES = 65536
DEFAULT_MAX_HEADER_FIELDS = 200
#: Fields tokenguard reads from a trusted proxy besides the configured ones, lower-case.
_FORWARDED_FIELDS = ("host", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-method",
                     "x-forwarded-uri")
#: tokenguard's answer sets ``X-Auth-*`` on the request the upstream gets.
_IDENTITY_PREFIX = "x-auth-"
#: Validated targets by their parts: a service sees the same few URLs all day, and parsing one costs more
#: than the lookup. Bounded in bytes too, as the parts are the client's (an entry holds ~3 copies of them).
_TARGETS_MAX_ENTRIES = 2048
_TARGETS_MAX_BYTES = 1 << 20


@lru_cache(maxsize=16)
def _origin(public_url: str) -> Target:
    return Target.parse(public_url + "/")


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
    """``trusted_proxies`` as networks, the configured ``public_url`` override, and whether tokenguard
    listens on a UNIX socket (its peer is then the proxy: the socket's file permissions decide who connects)."""

    networks: tuple[Network, ...]
    public_url: str | None = None
    unix_socket: bool = False
    #: peer address -> trusted: the same few proxies connect all day (bounded: peers are not chosen freely)
    _peers: dict[str, bool] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str], public_url: str | None = None, *,
                   unix_socket: bool = False) -> ProxyTrust:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs), (public_url or "").rstrip("/") or None,
                   unix_socket)

    def trusts(self, peer: str | None) -> bool:
        """Whether the peer is a trusted proxy."""
        if self.unix_socket:
            return True
        key = peer or ""
        known = self._peers.get(key)
        if known is None:
            if len(self._peers) >= 256:
                self._peers.clear()
            known = self._peers[key] = self._check(key)
        return known

    def _check(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`ForwardedRequestReader.admit` found: whether the peer is a trusted proxy, ``Authorization``
    as sent, and every ``DPoP`` value (a proof has no comma, so folded lines split exactly)."""

    trusted: bool
    authorization: tuple[str, ...]
    proofs: tuple[str, ...]


@dataclass(frozen=True)
class HeaderLimits:
    """tokenguard's own limits on everything but the credentials, whatever the serving engine."""

    max_bytes: int = DEFAULT_MAX_HEADER_BYTES  # names and values of every field line
    max_fields: int = DEFAULT_MAX_HEADER_FIELDS


@dataclass(frozen=True)
class ForwardedRequestReader:
    """The pieces every adapter shares: admission, trust, the external origin, and the client certificate."""

    trust: ProxyTrust
    cert_header: str = "X-SSL-Client-Cert"
    cert_format: str = "escaped-pem"
    method_header: str = "X-Original-Method"  # nginx's names; Caddy/Traefik's X-Forwarded-* are read too
    uri_header: str = "X-Original-URI"
    limits: HeaderLimits = field(default_factory=HeaderLimits)
    #: Lower-case names of the fields tokenguard believes from a proxy (built once).
    guarded: frozenset[str] = field(init=False, repr=False)
    _targets: BoundedCache[tuple[str, str, str | None, str], Target] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {*_FORWARDED_FIELDS, self.cert_header, self.method_header, self.uri_header}
        object.__setattr__(self, "guarded", frozenset(name.lower() for name in names))
        object.__setattr__(self, "_targets", BoundedCache(_TARGETS_MAX_ENTRIES, _TARGETS_MAX_BYTES))

    def admit(self, incoming: Incoming) -> Admission:
        """Apply tokenguard's limits and name rules to the whole header block; the credentials, and
        whether the peer is trusted."""
        if incoming.problem is not None:
            raise InvalidRequest(incoming.problem, "The serving engine cannot give an exact picture of this request")
        headers = incoming.headers
        count = size = 0
        for name, value in headers.fields():  # the hot loop: one pass, no per-field allocation
            count += 1
            size += len(name) + len(value)
            if "_" in name:
                self._refuse_underscore_spelling(name)
        authorization, dpop = headers.values("Authorization"), headers.values("DPoP")
        proofs = tuple(part.strip() for value in dpop for part in value.split(","))
        # Authorization and DPoP have their own limits and RFC answers (invalid_token, invalid_dpop_proof)
        count -= len(authorization) + len(dpop)
        size -= sum(len(value) + 13 for value in authorization) + sum(len(value) + 4 for value in dpop)
        if count > self.limits.max_fields:
            raise InvalidRequest("too_many_header_fields", "The request has more header fields than accepted")
        if size > self.limits.max_bytes:
            raise InvalidRequest("headers_too_large", "The request headers are larger than this server accepts")
        return Admission(self.trust.trusts(incoming.peer), authorization, proofs)

    def _refuse_underscore_spelling(self, name: str) -> None:
        hyphenated = name.lower().replace("_", "-")
        if hyphenated in self.guarded or hyphenated.startswith(_IDENTITY_PREFIX):
            raise InvalidRequest("underscore_header", "A header name spells a trusted field with underscores")

    @staticmethod
    def single(incoming: Incoming, name: str, reason: str) -> str | None:
        """The one value of a field a proxy sets once; sent twice it is ambiguous and refused."""
        values = incoming.headers.values(name)
        if not values:
            return None
        if len(values) > 1:
            raise InvalidRequest(reason, f"The {name} header appears more than once")
        return values[0].strip() or None

    def original(self, incoming: Incoming, configured: str, alternative: str, reason: str) -> str | None:
        """The original method or URI from the configured field or the other proxies' one, never both:
        a proxy sets one of them, so the other came from the client (Traefik passes client headers on)."""
        value = self.single(incoming, configured, reason)
        if configured.lower() == alternative.lower():
            return value
        other = self.single(incoming, alternative, reason)
        if value is not None and other is not None:
            raise InvalidRequest(reason, f"Both {configured} and {alternative} are present")
        return value if value is not None else other

    def target(self, incoming: Incoming, trusted: bool, request_uri: str) -> Target:
        """The external target from the forwarded scheme, host and port, and the original request-URI."""
        if self.trust.public_url:
            origin = _origin(self.trust.public_url)
            return Target.from_parts(origin.scheme, origin.host, origin.port, request_uri)
        scheme, authority, port = incoming.scheme, self.single(incoming, "Host", "bad_host"), None
        if trusted:
            scheme = self.single(incoming, "X-Forwarded-Proto", "bad_forwarded_proto") or scheme
            authority = self.single(incoming, "X-Forwarded-Host", "bad_forwarded_host") or authority
            port = self.single(incoming, "X-Forwarded-Port", "bad_forwarded_port")
        host, own_port = split_host_port(authority or "localhost")
        return self._target(scheme, host, own_port if own_port is not None else port, request_uri)

    def _target(self, scheme: str, host: str, port: str | None, request_uri: str) -> Target:
        """:meth:`Target.from_parts`, remembered for valid parts (a refusal is recomputed: it is rare)."""
        key = (scheme, host, port, request_uri)
        target = self._targets.get(key)
        if target is None:
            target = Target.from_parts(scheme, host, port, request_uri)
            self._targets.put(key, target, 3 * (len(host) + len(request_uri)) + 400)
        return target

    def client_cert(self, incoming: Incoming, trusted: bool) -> ClientCertificate | None:
        """The certificate in the configured header, from a trusted proxy only."""
        if not trusted:
            return None
        values = incoming.headers.values(self.cert_header)
        if not values:
            return None
        if len(values) > 1:
            return ClientCertificate(problem="more than one certificate header")
        try:
            der = read_client_cert(values[0], self.cert_format)
        except CertificateError as exc:
            return ClientCertificate(problem=str(exc))
        return None if der is None else ClientCertificate(der)
