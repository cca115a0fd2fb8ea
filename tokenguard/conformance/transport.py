"""How the suite reaches the verifier: as nginx's ``auth_request`` sub-request, or directly.

``http.client`` is used instead of ``requests`` because cases need repeated header fields
(two ``Authorization`` or ``DPoP`` fields, RFC 9449 §4.3(1)) and exact header-name spelling
(``DPOP:``/``dpop:``, HDR-RS-08).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokenguard.client.challenges import Challenge, ChallengeSyntaxError, parse_challenges, summarize

from .minting import PrivateKey, cert_pem, encode_cert_header

Header = tuple[str, str]


@dataclass
class Response:
    """What came back, reduced to what the cases judge (no body, no token material)."""

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
        reason = self.first("X-Auth-Error")
        if reason and all(c.isalnum() or c in "_-." for c in reason) and len(reason) < 64:
            parts.append(f"[{reason}]")
        return " ".join(parts)


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

    def send(self, req: Outgoing) -> Response:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release temporary files."""


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _request(conn: http.client.HTTPConnection, method: str, path: str,
             headers: Sequence[Header], body: bytes | None = None) -> Response:
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        raw = conn.getresponse()
        raw.read()
        return Response.build(raw.status, list(raw.getheaders()))
    finally:
        conn.close()


class AuthRequestTransport(Transport):
    """Impersonates nginx ``auth_request`` (spec §0.1 header list; rule R-14).

    The sub-request itself is always ``GET <verifier URL>``: the original method travels only in
    ``X-Original-Method``, so a verifier comparing ``htm`` with the sub-request method fails
    DPOP-RS-21, and one building ``htu`` from the sub-request URL fails DPOP-RS-29.
    """

    mode = "auth_request"

    def __init__(self, verifier_url: str, *, cert_header: str = "X-SSL-Client-Cert",
                 cert_format: str = "escaped-pem", verify_header: str = "X-SSL-Client-Verify",
                 timeout: float = 10.0, ca: str | None = None, insecure: bool = False) -> None:
        self.verifier_url = verifier_url
        self.cert_header = cert_header
        self.cert_format = cert_format
        self.verify_header = verify_header
        self.timeout = timeout
        self._target = urllib.parse.urlsplit(verifier_url)
        self._ssl = _client_context(ca, insecure) if self._target.scheme == "https" else None

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
            "X-Forwarded-Port": str(ext.port or _default_port(ext.scheme)),
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
        conn = self._connection()
        path = self._target.path or "/"
        if self._target.query:
            path += "?" + self._target.query
        return _request(conn, "GET", path, headers)

    def _connection(self) -> http.client.HTTPConnection:
        host = self._target.hostname or "127.0.0.1"
        port = self._target.port or _default_port(self._target.scheme)
        if self._ssl is not None:
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)


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


def parse_connect(value: str | None) -> tuple[str, int] | None:
    """``HOST:PORT``, ``[v6]:PORT`` or a base URL (``https://127.0.0.1:8443``) → (host, port)."""
    if not value:
        return None
    if "://" in value:
        u = urllib.parse.urlsplit(value)
        return (u.hostname or "127.0.0.1", u.port or _default_port(u.scheme))
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


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
        self.timeout = timeout
        self.ca = ca
        self.insecure = insecure
        self._tmp = tempfile.TemporaryDirectory(prefix="tg-conformance-")
        self._contexts: dict[int, ssl.SSLContext] = {}

    def close(self) -> None:
        self._tmp.cleanup()

    def _context(self, cert: ClientCert | None) -> ssl.SSLContext:
        key = id(cert.cert) if cert else 0
        if key not in self._contexts:
            ctx = _client_context(self.ca, self.insecure)
            if cert is not None:
                cpath = os.path.join(self._tmp.name, f"c{key}.pem")
                kpath = os.path.join(self._tmp.name, f"k{key}.pem")
                with open(cpath, "w", encoding="ascii") as fh:
                    fh.write(cert_pem(cert.cert))
                with open(kpath, "wb") as fh:
                    fh.write(cert.key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
                ctx.load_cert_chain(cpath, kpath)
            self._contexts[key] = ctx
        return self._contexts[key]

    def send(self, req: Outgoing) -> Response:
        ext = urllib.parse.urlsplit(req.url)
        path = (ext.path or "/") + (f"?{ext.query}" if ext.query else "")
        name = ext.hostname or "127.0.0.1"
        addr = self.connect_to or (name, ext.port or _default_port(ext.scheme))
        conn: http.client.HTTPConnection
        if ext.scheme == "https":
            conn = _ConnectToHTTPSConnection(name, addr, timeout=self.timeout, context=self._context(req.cert))
        else:
            conn = http.client.HTTPConnection(addr[0], addr[1], timeout=self.timeout)
        headers: list[Header] = [("Host", ext.netloc)] + list(req.headers)
        body = b"" if req.method in ("POST", "PUT", "PATCH") else None
        return _request(conn, req.method, path, headers, body)


def _client_context(ca: str | None, insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
