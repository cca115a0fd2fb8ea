"""A DPoP-aware HTTP client: a fresh proof per request, server nonces remembered, one retry on demand.

Nonces are handled as RFC 9449 §8 (authorization server: ``400 use_dpop_nonce``) and §9 (resource
server: ``401`` with a ``DPoP`` challenge) describe. Every expected failure raises
:class:`~tokenguard.client.errors.ClientError` with a one-line message that never contains a token,
proof or secret.
"""

from __future__ import annotations

import base64
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from joserfc.errors import SecurityWarning

from tokenguard.client.challenges import Challenge, ChallengeSyntaxError, parse_challenges
from tokenguard.client.errors import ClientError
from tokenguard.client.keys import key_alg
from tokenguard.client.tokens import htu_of
from tokenguard.core.dpop import create_proof
from tokenguard.core.jwk import JWKError

DEFAULT_TIMEOUT = 10.0
#: TLS verification as ``requests`` takes it: True (system CAs), False, or a CA bundle path.
Verify = bool | str
#: A client certificate as ``requests`` takes it: one PEM file, or (certificate, key).
ClientCertFiles = str | tuple[str, str] | None


def parse_www_authenticate(values: str | Sequence[str]) -> list[Challenge]:
    """Challenges in ``WWW-Authenticate`` (RFC 9110 §11.6.1); a client shrugs off a malformed header."""
    try:
        return parse_challenges(values if isinstance(values, str) else list(values))
    except ChallengeSyntaxError:
        return []


def dpop_nonce_demanded(response: requests.Response) -> str | None:
    """The nonce a resource server asks for (RFC 9449 §9), or None.

    A ``401`` whose ``DPoP`` challenge says ``error="use_dpop_nonce"``, or any ``401`` with a
    ``DPoP-Nonce`` header; the nonce is that header's value.
    """
    if response.status_code != 401:
        return None
    nonce = response.headers.get("DPoP-Nonce")
    if not nonce:
        return None
    return nonce.split(",")[0].strip() or None


def challenge_error(response: requests.Response, scheme: str | None = None) -> str | None:
    """The ``error`` of the response's challenge (of ``scheme`` if given), parsed, not string-matched."""
    header = response.headers.get("WWW-Authenticate")
    if not header:
        return None
    for item in parse_www_authenticate(header):
        if (scheme is None or item.scheme.lower() == scheme.lower()) and "error" in item.params:
            return item.params["error"]
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


#: OpenSSL's words for "the other side does not speak TLS" (an http:// server reached as https://).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG",
            "UNKNOWN_PROTOCOL")


def _tls_error(target: str, exc: requests.exceptions.SSLError) -> ClientError:
    """One clear line for a failed TLS handshake (OpenSSL's own text is nested and often cut short)."""
    text = " ".join(str(exc).split())
    match = re.search(r"\[SSL: ([A-Z0-9_]+)\]\s*([^(\"']*)", text)
    code, words = (match.group(1), match.group(2).strip()) if match else ("", "")
    if code in _NOT_TLS:
        return ClientError(f"TLS handshake with {target} failed: nothing speaks TLS on that port "
                           f"(OpenSSL: {code}); is it http:// rather than https://?")
    if "CERTIFICATE_VERIFY_FAILED" in code or "certificate verify failed" in text:
        return ClientError(f"TLS error talking to {target}: its certificate is not trusted ({_short(exc)}); "
                           "pass --cacert FILE with the CA that issued it (or --insecure, for testing only)")
    detail = f"OpenSSL: {code}{' ' + words if words else ''}" if code else "the TLS handshake failed"
    return ClientError(f"TLS error talking to {target} ({detail}); check the URL, --cacert and --cert")


def _network_error(url: str, exc: requests.RequestException) -> ClientError:
    target = _origin(url)
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(target, exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ClientError(f"cannot connect to {target}: is the server running? ({_short(exc)})")
    if isinstance(exc, requests.exceptions.Timeout):
        return ClientError(f"timed out talking to {target}")
    return ClientError(f"request to {target} failed: {_short(exc)}")


def _short(exc: BaseException) -> str:
    """The useful words of a urllib3/ssl error chain (e.g. "Connection refused")."""
    text = " ".join(str(exc).split())
    for pattern in (r"certificate verify failed: ([^(\"']+)", r"\[Errno -?\d+\] ([^\"')]+)",
                    r"Failed to resolve [^\"')]+", r"Read timed out"):
        match = re.search(pattern, text)
        if match:
            return (match.group(1) if match.groups() else match.group(0)).strip()
    return text[:160]


@dataclass
class Exchange:
    """One logical request: the final response and every proof sent on the way (for ``-v``)."""

    response: requests.Response
    proofs: list[str] = field(default_factory=list)
    nonce_retry: bool = False
    url: str = ""


class DpopClient:
    """Sends requests with a fresh DPoP proof each, remembering server nonces per origin.

    ``key`` is the private JWK (None: no proofs, plain ``Bearer``). ``on_proof`` sees each proof as
    it is made (the CLI prints its decoded header and claims).
    """

    def __init__(self, key: Mapping[str, Any] | None, *, session: requests.Session | None = None,
                 verify: Verify = True, cert: ClientCertFiles = None, timeout: float = DEFAULT_TIMEOUT,
                 on_proof: Callable[[str], None] | None = None) -> None:
        self.key = dict(key) if key is not None else None
        self.session = session or requests.Session()
        self.verify = verify
        self.cert = cert
        self.timeout = timeout
        self.on_proof = on_proof
        self.nonces: dict[str, str] = {}

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
        """A fresh RFC 9449 §4.2 proof for ``method url`` (``ath`` when there is an access token)."""
        if self.key is None:
            raise ClientError("a DPoP key is needed for this request (--key)")
        try:
            with warnings.catch_warnings():
                # joserfc warns that RFC 9864 deprecates the name "EdDSA"; RFC 9449 servers still expect it.
                warnings.simplefilter("ignore", SecurityWarning)
                proof = create_proof(self.key, htm=method, htu=htu_of(url), access_token=access_token,
                                     nonce=nonce if nonce is not None else self.nonces.get(_origin(url)),
                                     alg=key_alg(self.key))
        except (JWKError, ValueError, TypeError) as exc:
            raise ClientError(f"cannot sign a DPoP proof with this key: {exc}") from None
        if self.on_proof:
            self.on_proof(proof)
        return proof

    def _send(self, method: str, url: str, headers: Mapping[str, str], data: bytes | str | None,
              proof_for: Callable[[str, str, str | None], str] | None, proofs: list[str],
              nonce: str | None, signed: tuple[str, str] | None = None) -> requests.Response:
        """Send once. The proof covers what is actually sent, or ``signed`` (htm, URL) when given."""
        request = requests.Request(method, url, headers=dict(headers), data=data)
        prepared = self.session.prepare_request(request)
        assert prepared.url is not None and prepared.method is not None
        htm, target = signed or (prepared.method, prepared.url)
        if proof_for is not None:
            proof = proof_for(htm, target, nonce)
            proofs.append(proof)
            prepared.headers["DPoP"] = proof
        try:
            response = self.session.send(prepared, verify=self.verify, cert=self.cert, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise _network_error(url, exc) from None
        except OSError as exc:  # e.g. an unreadable --cert file
            raise ClientError(f"cannot send the request: {exc.strerror or exc}") from None
        fresh = response.headers.get("DPoP-Nonce")
        if fresh and proof_for is not None:
            self.nonces[_origin(target)] = fresh.split(",")[0].strip()  # §8.2, §9: use it from now on
        return response

    def request(self, method: str, url: str, *, access_token: str | None = None, scheme: str = "DPoP",
                headers: Mapping[str, str] | None = None, data: bytes | str | None = None,
                auth_request: str | None = None, proof: str | None = None) -> Exchange:
        """Call a resource server: ``Authorization: <scheme> <token>`` plus, for DPoP, a proof with ``ath``.

        Retries once on a ``401`` that demands a nonce (RFC 9449 §9). With ``auth_request`` (a
        verifier's ``/auth`` URL) the request goes there instead, described the way nginx's
        ``auth_request`` describes it (``X-Original-*``, ``X-Forwarded-*``), without a body, and the
        proof is for ``method url``. ``proof`` sends that exact proof (a replay) instead of a fresh one.
        """
        all_headers = dict(headers or {})
        if access_token is not None:
            all_headers["Authorization"] = f"{scheme} {access_token}"
        use_dpop = scheme.lower() == "dpop"
        send_method, send_url, signed = method.upper(), url, None
        if auth_request is not None:
            all_headers.update(auth_request_headers(method, url))
            send_method, send_url, signed, data = "GET", auth_request, (method.upper(), url), None

        def proof_for(htm: str, target: str, nonce: str | None) -> str:
            if proof is not None:
                return proof
            return self.proof(htm, target, access_token=access_token, nonce=nonce)

        proofs: list[str] = []
        producer = proof_for if use_dpop else None
        response = self._send(send_method, send_url, all_headers, data, producer, proofs, None, signed)
        nonce = dpop_nonce_demanded(response) if use_dpop and proof is None else None
        if nonce is not None:
            response = self._send(send_method, send_url, all_headers, data, producer, proofs, nonce, signed)
        return Exchange(response, proofs, nonce is not None, send_url)

    def token_request(self, url: str, form: Sequence[tuple[str, str]], *, auth: tuple[str, str] | None = None,
                      dpop: bool = True) -> Exchange:
        """POST to a token endpoint; retries once on ``400 use_dpop_nonce`` (RFC 9449 §8)."""
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            headers["Authorization"] = basic_authorization(*auth)
        body = urlencode(list(form))

        def proof_for(htm: str, target: str, nonce: str | None) -> str:
            return self.proof(htm, target, nonce=nonce)

        proofs: list[str] = []
        producer = proof_for if dpop else None
        response = self._send("POST", url, headers, body, producer, proofs, None)
        nonce = response.headers.get("DPoP-Nonce") if dpop else None
        retry = bool(nonce) and response.status_code in (400, 401) and _json_error(response) == "use_dpop_nonce"
        if retry:
            assert nonce is not None
            response = self._send("POST", url, headers, body, producer, proofs, nonce.split(",")[0].strip())
        return Exchange(response, proofs, retry, url)


def auth_request_headers(method: str, url: str) -> dict[str, str]:
    """How nginx ``auth_request`` (deploy/nginx/tokenguard.conf) describes the original request."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return {"X-Original-Method": method.upper(),
            "X-Original-URI": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            "X-Forwarded-Proto": scheme, "X-Forwarded-Host": host, "X-Forwarded-Port": str(port)}


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1 ``client_secret_basic``: id and secret form-urlencoded, then HTTP Basic."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _json_error(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None
