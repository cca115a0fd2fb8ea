"""The request the core decides on: the original request as the proxy forwarded it, in validated parts.

A proxy adapter (:mod:`tokenguard.web.adapters`) builds an :class:`AuthRequest` from what the proxy
sent; the core never sees a proxy header. The external target is held as parts -- scheme, host,
port, path, query -- each checked against its own grammar, and the DPoP ``htu`` comparison value is
built from the parts, never by joining strings that could smuggle a ``?`` or ``#`` into the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenguard.core.b64 import sha256_b64url
from tokenguard.core.errors import InvalidRequest
from tokenguard.core.uri import URIError, normalize_host, normalize_path

DEFAULT_PORTS = {"http": 80, "https": 443}
#: The longest original request target decided on (nginx's default large header buffer is 8 KiB).
MAX_TARGET_LENGTH = 8192

#: RFC 3986 §3.2.2 ``reg-name`` (unreserved / pct-encoded / sub-delims), or an IPv6 / IPvFuture literal.
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_IP_LITERAL = re.compile(r"\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]")
#: RFC 9112 §3.2.1 origin-form: an absolute path and an optional query; no fragment, no spaces or controls.
_ORIGIN_FORM = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*)?")
#: RFC 9110 §9.1 method = token.
METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def valid_host(host: str) -> bool:
    """RFC 3986 ``host`` without the port: a reg-name or an IP-literal (nothing that ends the authority)."""
    return bool(_REG_NAME.fullmatch(host) or _IP_LITERAL.fullmatch(host))


@dataclass(frozen=True, slots=True)
class Target:
    """The external request target, in parts: what the client asked the proxy for.

    ``htu`` is the RFC 9449 §4.3 (9) comparison value: scheme, host and port normalised
    (RFC 3986 §6.2.2-§6.2.3), the path with dot segments removed, no query, no fragment.
    """

    scheme: str
    host: str
    port: int | None
    path: str
    query: str | None = None

    @property
    def htu(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"

    @classmethod
    def from_parts(cls, scheme: str, host: str, port: int | str | None, request_uri: str, *,
                   reason: str = "bad_request_uri") -> Target:
        """Validate each part by its own grammar; anything that does not parse is ``invalid_request``."""
        scheme = scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise InvalidRequest("bad_forwarded_proto", "The forwarded scheme is not http or https")
        if not valid_host(host):
            raise InvalidRequest("bad_forwarded_host", "The forwarded host is not a valid host name")
        number: int | None = None
        if port is not None and port != "":
            text = str(port)
            if not text.isascii() or not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
                raise InvalidRequest("bad_forwarded_port", "The forwarded port is not a number from 1 to 65535")
            number = int(text)
            if number == DEFAULT_PORTS[scheme]:
                number = None  # the same origin either way (RFC 3986 §6.2.3)
        if len(request_uri) > MAX_TARGET_LENGTH:
            raise InvalidRequest("request_uri_too_large", "The original request target is too long")
        if not _ORIGIN_FORM.fullmatch(request_uri):
            raise InvalidRequest(reason, "The original request target is not an origin-form URI")
        raw_path, sep, query = request_uri.partition("?")
        try:
            path, host = normalize_path(raw_path), normalize_host(host)
        except URIError:
            raise InvalidRequest(reason, "The original request target is not an origin-form URI") from None
        return cls(scheme, host, number, path, query if sep else None)

    @classmethod
    def parse(cls, url: str) -> Target:
        """An absolute ``http(s)`` URL (tests, the mock IdP and ``explain``): split, then :meth:`from_parts`."""
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise InvalidRequest("bad_request_url", "The request URL is not absolute")
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, request_uri = rest[:cut], rest[cut:]
        request_uri = request_uri.split("#", 1)[0]
        if not request_uri.startswith("/"):
            request_uri = "/" + request_uri
        host, port = authority, None
        if authority.startswith("["):
            end = authority.find("]") + 1
            host, tail = authority[:end], authority[end:]
            if tail:
                port = tail[1:] if tail.startswith(":") else tail  # a bad port fails its grammar below
        elif ":" in authority:
            host, port = authority.rsplit(":", 1)
        try:
            return cls.from_parts(scheme, host, port, request_uri, reason="bad_request_url")
        except InvalidRequest as exc:
            raise InvalidRequest("bad_request_url", "The request URL is invalid") from exc


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """The certificate the client presented in TLS, as the trusted proxy handed it over.

    ``problem`` is set when the proxy's header was present but did not hold one certificate; it
    matters only for a certificate-bound token (RFC 8705 §3), which then fails ``cert_malformed``.
    """

    der: bytes = b""
    problem: str | None = None

    @property
    def x5t_s256(self) -> str:
        """RFC 8705 §3.1: base64url SHA-256 of the DER certificate."""
        return sha256_b64url(self.der)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The original request, as the proxy adapter rebuilt it from trusted headers.

    ``method`` must be an RFC 9110 §9.1 token: it is matched against routes and compared with ``htm``.
    """

    method: str
    target: Target
    authorization: tuple[str, ...] = ()
    dpop: tuple[str, ...] = ()
    client_cert: ClientCertificate | None = None

    def __post_init__(self) -> None:
        if not METHOD.fullmatch(self.method):
            raise InvalidRequest("bad_forwarded_method", "The original request method is not an HTTP method token")

    @classmethod
    def for_url(cls, method: str, url: str, authorization: tuple[str, ...] = (), dpop: tuple[str, ...] = (),
                client_cert: ClientCertificate | None = None) -> AuthRequest:
        """A request for an absolute URL (tests, the mock IdP's own endpoints, ``explain``)."""
        return cls(method, Target.parse(url), authorization, dpop, client_cert)
