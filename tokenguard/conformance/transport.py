"""Every byte the suite sends goes through here: as nginx's ``auth_request`` sub-request, directly
to a deployment, or as a client of an authorization server.

``http.client`` is used instead of ``requests`` because cases need repeated header fields
(two ``Authorization`` or ``DPoP`` fields, RFC 9449 §4.3(1)), exact header-name spelling
(``DPOP:``/``dpop:``, HDR-RS-08) and no automatic redirects or retries. Responses keep the body
only as bytes for the case to inspect; nothing here prints a body, a token or a proof.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokenguard.client.challenges import Challenge, ChallengeSyntaxError, parse_challenges, summarize

from .minting import PrivateKey, cert_pem, encode_cert_header

Header = tuple[str, str]
#: A client certificate as files: (certificate PEM path, private key PEM path).
CertPair = tuple[str, str]


# --------------------------------------------------------------------------- responses


@dataclass
class Response:
    """What a verifier answered, reduced to what the cases judge (status, headers, challenges)."""

    status: int
    headers: list[Header]
    challenges: list[Challenge] = field(default_factory=list)
    challenge_error: str | None = None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    @classmethod
    def build(cls, status: int, headers: list[Header]) -> Response:
        resp = cls(status=status, headers=headers)
        values = resp.all("WWW-Authenticate")
        if values:
            try:
                resp.challenges = parse_challenges(values)
            except ChallengeSyntaxError as exc:
                resp.challenge_error = str(exc)
        return resp

    def reason_code(self) -> str | None:
        """``X-Auth-Error`` when it is a plain reason code (tokenguard and others send one)."""
        reason = self.first("X-Auth-Error")
        if reason and all(c.isalnum() or c in "_-." for c in reason) and len(reason) < 64:
            return reason
        return None

    def summary(self) -> str:
        """``got`` column: status, challenge schemes with ``error``, nonce count, reason code."""
        parts = [str(self.status)]
        if self.challenge_error:
            parts.append(f"unparseable-challenge({self.challenge_error})")
        elif self.challenges or self.all("WWW-Authenticate"):
            parts.append(summarize(self.challenges))
        nonces = self.all("DPoP-Nonce")
        if nonces:
            parts.append(f"DPoP-Nonce×{len(nonces)}")
        reason = self.reason_code()
        if reason:
            parts.append(f"[{reason}]")
        return " ".join(parts)


@dataclass
class JsonResponse:
    """What an authorization server answered: status, headers and the parsed JSON body (or None)."""

    status: int
    headers: list[Header]
    body: Any = None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def error(self) -> str | None:
        """RFC 6749 §5.2 ``error`` member of a JSON error body."""
        value = self.body.get("error") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None

    def member(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    def summary(self) -> str:
        """``got`` column: status, ``error``, ``token_type``, nonce count (never token values)."""
        parts = [str(self.status)]
        if self.error:
            parts.append(f"error={self.error}")
        if isinstance(self.body, dict) and "token_type" in self.body:
            parts.append(f"token_type={self.body['token_type']}")
        n = len(self.all("DPoP-Nonce"))
        if n:
            parts.append(f"DPoP-Nonce×{n}")
        return " ".join(parts)


# --------------------------------------------------------------------------- connections


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def client_context(ca: str | None, insecure: bool, cert: CertPair | None = None) -> ssl.SSLContext:
    """TLS client context: ``ca`` bundle, optional client certificate, or no verification at all."""
    ctx = ssl.create_default_context(cafile=ca)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


class _ConnectToHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``addr`` (``curl --connect-to``) with SNI and certificate check for ``server_name``."""

    def __init__(self, server_name: str, addr: tuple[str, int], *, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(server_name, addr[1], timeout=timeout, context=context)
        self._addr = addr
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection(self._addr, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def connection(url: urllib.parse.SplitResult, *, timeout: float, context: ssl.SSLContext | None,
               connect_to: tuple[str, int] | None = None) -> http.client.HTTPConnection:
    """A connection for ``url``; ``connect_to`` only changes the TCP destination."""
    name = url.hostname or "127.0.0.1"
    addr = connect_to or (name, url.port or default_port(url.scheme))
    if url.scheme == "https":
        assert context is not None
        return _ConnectToHTTPSConnection(name, addr, timeout=timeout, context=context)
    return http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)


def exchange(conn: http.client.HTTPConnection, method: str, target: str, headers: Sequence[Header],
             body: bytes | None = None) -> tuple[int, list[Header], bytes]:
    """Send one request exactly as given (header order and spelling kept) and read the answer."""
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        raw = conn.getresponse()
        data = raw.read()
        return raw.status, list(raw.getheaders()), data
    finally:
        conn.close()


def request_target(url: urllib.parse.SplitResult) -> str:
    return (url.path or "/") + (f"?{url.query}" if url.query else "")


# --------------------------------------------------------------------------- resource-server side


@dataclass
class ClientCert:
    """A client certificate the suite presents (header in auth_request mode, TLS in direct mode)."""

    cert: x509.Certificate
    key: PrivateKey


@dataclass
class Outgoing:
    """One external request as the client made it (before the proxy)."""

    method: str
    url: str  # external absolute URL incl. query
    headers: list[Header] = field(default_factory=list)
    cert: ClientCert | None = None
    # auth_request-mode overrides of what the proxy would send:
    cert_header_value: str | None = None  # raw value of the cert header (wins over ``cert``)
    omit_cert_header: bool = False
    verify_value: str | None = None
    forwarded_overrides: dict[str, str] = field(default_factory=dict)


class Transport:
    """Base: send an :class:`Outgoing` and return a :class:`Response`."""

    mode = "base"
    #: what the verifier is reached at, for messages (auth endpoint or proxy address)
    target = ""

    def send(self, req: Outgoing) -> Response:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release temporary files."""


class AuthRequestTransport(Transport):
    """Impersonates nginx ``auth_request`` (the header list of docs/conformance.md; rule R-14, docs/rules.md).

    The sub-request itself is always ``GET <verifier URL>``: the original method travels only in
    ``X-Original-Method``, so a verifier comparing ``htm`` with the sub-request method fails
    DPOP-RS-21, and one building ``htu`` from the sub-request URL fails DPOP-RS-29.
    """

    mode = "auth_request"

    def __init__(self, verifier_url: str, *, cert_header: str = "X-SSL-Client-Cert",
                 cert_format: str = "escaped-pem", verify_header: str = "X-SSL-Client-Verify",
                 timeout: float = 10.0, ca: str | None = None, insecure: bool = False) -> None:
        self.verifier_url = verifier_url
        self.target = verifier_url
        self.cert_header = cert_header
        self.cert_format = cert_format
        self.verify_header = verify_header
        self.timeout = timeout
        self._target = urllib.parse.urlsplit(verifier_url)
        self._ssl = client_context(ca, insecure) if self._target.scheme == "https" else None

    def send(self, req: Outgoing) -> Response:
        ext = urllib.parse.urlsplit(req.url)
        original_uri = ext.path or "/"
        if ext.query:
            original_uri += "?" + ext.query
        fwd = {
            "X-Original-Method": req.method,
            "X-Original-URI": original_uri,
            "X-Forwarded-Proto": ext.scheme,
            "X-Forwarded-Host": (ext.hostname or "").lower(),
            "X-Forwarded-Port": str(ext.port or default_port(ext.scheme)),
        }
        fwd.update(req.forwarded_overrides)
        headers: list[Header] = [("Host", self._target.netloc)]
        headers += list(fwd.items())
        if not req.omit_cert_header:
            if req.cert_header_value is not None:
                headers.append((self.cert_header, req.cert_header_value))
            elif req.cert is not None:
                headers.append((self.cert_header, encode_cert_header(req.cert.cert, self.cert_format)))
        if self.verify_header:
            verify = req.verify_value or ("SUCCESS" if req.cert is not None else "NONE")
            headers.append((self.verify_header, verify))
        headers += req.headers
        conn = connection(self._target, timeout=self.timeout, context=self._ssl)
        status, got, _ = exchange(conn, "GET", request_target(self._target), headers)
        return Response.build(status, got)


def parse_connect(value: str | None) -> tuple[str, int] | None:
    """``HOST:PORT``, ``[v6]:PORT`` or a base URL (``https://127.0.0.1:8443``) → (host, port)."""
    if not value:
        return None
    if "://" in value:
        u = urllib.parse.urlsplit(value)
        return (u.hostname or "127.0.0.1", u.port or default_port(u.scheme))
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class _CertFiles:
    """Client certificates written to a private temporary directory, for ``load_cert_chain``."""

    def __init__(self, prefix: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self._written: dict[int, CertPair] = {}

    def files(self, cert: ClientCert) -> CertPair:
        key = id(cert.cert)
        if key not in self._written:
            cpath = os.path.join(self._tmp.name, f"c{key}.pem")
            kpath = os.path.join(self._tmp.name, f"k{key}.pem")
            with open(cpath, "w", encoding="ascii") as fh:
                fh.write(cert_pem(cert.cert))
            fd = os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(cert.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
            self._written[key] = (cpath, kpath)
        return self._written[key]

    def cleanup(self) -> None:
        self._tmp.cleanup()


class DirectTransport(Transport):
    """Calls the protected resource as a client would, presenting client certificates in TLS.

    Scheme, ``Host``, TLS SNI, the server-certificate check and the request target all come from
    the external URL (``--resource``), exactly as a client of the deployment would send them;
    only the TCP destination may be overridden (``connect``, like ``curl --connect-to``), so the
    proxy under test can listen on 127.0.0.1 while the URL (and therefore ``htu``) names its public
    host. Without ``connect`` the URL's own host and port are dialled.
    """

    mode = "direct"

    def __init__(self, connect: str | None = None, *, timeout: float = 10.0, ca: str | None = None,
                 insecure: bool = False) -> None:
        self.connect_to = parse_connect(connect)
        self.target = connect or ""
        self.timeout = timeout
        self.ca = ca
        self.insecure = insecure
        self._files = _CertFiles("tg-conformance-")
        self._contexts: dict[int, ssl.SSLContext] = {}

    def close(self) -> None:
        self._files.cleanup()

    def _context(self, cert: ClientCert | None) -> ssl.SSLContext:
        key = id(cert.cert) if cert else 0
        if key not in self._contexts:
            pair = self._files.files(cert) if cert is not None else None
            self._contexts[key] = client_context(self.ca, self.insecure, pair)
        return self._contexts[key]

    def send(self, req: Outgoing) -> Response:
        ext = urllib.parse.urlsplit(req.url)
        context = self._context(req.cert) if ext.scheme == "https" else None
        conn = connection(ext, timeout=self.timeout, context=context, connect_to=self.connect_to)
        headers: list[Header] = [("Host", ext.netloc)] + list(req.headers)
        body = b"" if req.method in ("POST", "PUT", "PATCH") else None
        status, got, _ = exchange(conn, req.method, request_target(ext), headers, body)
        return Response.build(status, got)


# --------------------------------------------------------------------------- authorization-server side


class HttpClient:
    """A plain HTTP(S) client for the authorization-server cases: forms in, JSON out.

    Client certificates (RFC 8705) are given per request as file pairs; TLS contexts are cached per
    pair. Redirects are never followed: the cases look at ``Location`` themselves.
    """

    def __init__(self, *, timeout: float = 10.0, ca: str | None = None, insecure: bool = False) -> None:
        self.timeout = timeout
        self.ca = ca
        self.insecure = insecure
        self._contexts: dict[CertPair | None, ssl.SSLContext] = {}

    def _context(self, cert: CertPair | None) -> ssl.SSLContext:
        if cert not in self._contexts:
            self._contexts[cert] = client_context(self.ca, self.insecure, cert)
        return self._contexts[cert]

    def request(self, method: str, url: str, *, headers: Sequence[Header] = (),
                form: Mapping[str, str] | None = None, cert: CertPair | None = None) -> JsonResponse:
        """Send ``form`` as ``application/x-www-form-urlencoded`` (RFC 6749 §3.2) and parse JSON back."""
        u = urllib.parse.urlsplit(url)
        conn = connection(u, timeout=self.timeout, context=self._context(cert) if u.scheme == "https" else None)
        hdrs: list[Header] = [("Host", u.netloc), *headers]
        body = None
        if form is not None:
            body = urllib.parse.urlencode(dict(form)).encode("ascii")
            hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
        status, got, data = exchange(conn, method, request_target(u), hdrs, body)
        try:
            parsed: Any = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return JsonResponse(status, got, parsed)
