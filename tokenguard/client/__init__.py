"""The client side of DPoP and mTLS: keys, token requests, and requests with a fresh proof each time.

What the ``tokenguard`` CLI, ``scripts/demo.py`` and the conformance suite share. Proofs come from
:func:`tokenguard.core.dpop.create_proof` (RFC 9449 §4.2). Nonces are handled as §8 (authorization server:
``400 use_dpop_nonce``) and §9 (resource server: ``401`` with a ``DPoP`` challenge) describe: the
request is retried once with the server's ``DPoP-Nonce``. Every expected failure raises
:class:`ClientError` with a one-line message that never contains a token, proof or secret.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.errors import SecurityWarning

from tokenguard.client.challenges import Challenge, ChallengeSyntaxError, parse_challenges
from tokenguard.core.b64 import b64url_encode
from tokenguard.core.dpop import create_proof
from tokenguard.core.jwk import THUMBPRINT_MEMBERS, JWKError, public_jwk, thumbprint
from tokenguard.core.jws import JWSError, parse_compact
from tokenguard.core.uri import URIError, normalize_target

#: The algorithms ``keygen`` offers (RFC 9449 §4.2 forbids MAC algorithms and ``none``).
KEY_ALGS = ("ES256", "EdDSA", "RS256", "PS256")
DEFAULT_TIMEOUT = 10.0
#: TLS verification as ``requests`` takes it: True (system CAs), False, or a CA bundle path.
Verify = bool | str
#: A client certificate as ``requests`` takes it: one PEM file, or (certificate, key).
ClientCertFiles = str | tuple[str, str] | None


class ClientError(Exception):
    """An expected failure, with a one-line message fit for a terminal (no secrets in it)."""

    exit_code = 2  # could not do it: bad input, unreadable file, network


class RequestRefused(ClientError):
    """The server answered, and the answer was no (e.g. a token endpoint error)."""

    exit_code = 1


# ------------------------------------------------------------------------------------------ keys


def _int_b64(value: int, length: int | None = None) -> str:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def generate_jwk(alg: str, *, rsa_bits: int = 2048) -> dict[str, Any]:
    """A new private JWK for ``alg`` with ``alg`` and ``kid`` (= its RFC 7638 thumbprint) set."""
    if alg == "ES256":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        numbers = ec_key.private_numbers()
        jwk: dict[str, Any] = {"kty": "EC", "crv": "P-256", "x": _int_b64(numbers.public_numbers.x, 32),
                               "y": _int_b64(numbers.public_numbers.y, 32), "d": _int_b64(numbers.private_value, 32)}
    elif alg == "EdDSA":
        from cryptography.hazmat.primitives import serialization as ser

        ed_key = ed25519.Ed25519PrivateKey.generate()
        raw_private = ed_key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
        raw_public = ed_key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw_public), "d": b64url_encode(raw_private)}
    elif alg in ("RS256", "PS256"):
        if rsa_bits < 2048:
            raise ClientError("RSA keys must have at least 2048 bits")
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        priv = rsa_key.private_numbers()
        pub = priv.public_numbers
        jwk = {"kty": "RSA", "n": _int_b64(pub.n), "e": _int_b64(pub.e), "d": _int_b64(priv.d),
               "p": _int_b64(priv.p), "q": _int_b64(priv.q), "dp": _int_b64(priv.dmp1),
               "dq": _int_b64(priv.dmq1), "qi": _int_b64(priv.iqmp)}
    else:
        raise ClientError(f"unsupported algorithm {alg!r}: choose one of {', '.join(KEY_ALGS)}")
    jwk["alg"] = alg
    jwk["kid"] = thumbprint(jwk)
    return jwk


def read_text(source: str, what: str) -> str:
    """Text from ``-`` (stdin), ``@path`` or a plain path."""
    if source == "-":
        return sys.stdin.read()
    path = source[1:] if source.startswith("@") else source
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ClientError(f"{what} file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {what} file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def parse_jwk(text: str, source: str, *, private: bool) -> dict[str, Any]:
    """Parse one JWK (or a JWK Set holding exactly one key) and check that it is usable."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(value, dict) and isinstance(value.get("keys"), list) and len(value["keys"]) == 1:
        value = value["keys"][0]
    if not isinstance(value, dict) or "kty" not in value:
        raise ClientError(f"{source}: not a JWK (a JSON object with a kty member)")
    kty = value.get("kty")
    if kty not in THUMBPRINT_MEMBERS:
        raise ClientError(f"{source}: unsupported key type kty={kty!r}")
    missing = [m for m in THUMBPRINT_MEMBERS[kty] if not isinstance(value.get(m), str)]
    if missing:
        raise ClientError(f"{source}: JWK lacks {', '.join(missing)}")
    if private:
        if kty == "oct":
            raise ClientError(f"{source}: a symmetric key cannot sign DPoP proofs (RFC 9449 §4.2)")
        if "d" not in value:
            raise ClientError(f"{source}: this is a public key; DPoP proofs need the private JWK (with d)")
        try:
            from joserfc import jwk as jose_jwk

            jose_jwk.import_key(dict(value))
        except Exception as exc:  # joserfc raises assorted errors for bad key material
            raise ClientError(f"{source}: invalid private key ({type(exc).__name__})") from None
    return value


def load_private_jwk(path: str) -> dict[str, Any]:
    """The private JWK in ``path`` (``-`` for stdin)."""
    return parse_jwk(read_text(path, "key"), path, private=True)


def key_alg(jwk: Mapping[str, Any]) -> str:
    """The JWS alg a key signs with: its ``alg`` member, else the usual one for its type."""
    from tokenguard.core.dpop import _default_alg

    return str(jwk.get("alg") or _default_alg(jwk))


def write_private_jwk(path: str, jwk: Mapping[str, Any], *, force: bool = False) -> None:
    """Write a private JWK readable by its owner only (0600); refuse to overwrite unless ``force``."""
    target = Path(path)
    text = json.dumps(jwk, indent=2) + "\n"
    if target.is_dir():
        raise ClientError(f"{path} is a directory")
    if target.exists() and not force:
        raise ClientError(f"{path} already exists; use --force to overwrite it")
    try:
        fd, tmp = tempfile.mkstemp(dir=str(target.parent or Path(".")), prefix=".keygen-")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o600)
            if force:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)  # atomic "create, never overwrite"
                os.unlink(tmp)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except FileExistsError:
        raise ClientError(f"{path} already exists; use --force to overwrite it") from None
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------- tokens, proofs


def read_token(value: str) -> tuple[str, str | None]:
    """An access token from a literal, ``@file`` or ``-``; a token response JSON is accepted too.

    Returns ``(access_token, token_type)``; ``token_type`` is only known from a token response.
    """
    from_file = value == "-" or value.startswith("@")
    text = (read_text(value, "token") if from_file else value).strip()
    where = ("stdin" if value == "-" else value[1:]) if from_file else "--token"
    if text.startswith("{"):
        try:
            response = json.loads(text)
        except ValueError:
            raise ClientError(f"token from {where} looks like JSON but does not parse") from None
        token = response.get("access_token") if isinstance(response, dict) else None
        if not isinstance(token, str) or not token:
            raise ClientError(f"token from {where}: the JSON has no access_token")
        token_type = response.get("token_type")
        return token, token_type if isinstance(token_type, str) else None
    if not text:
        raise ClientError(f"token from {where} is empty")
    if any(c.isspace() for c in text):
        raise ClientError(f"token from {where} contains whitespace")
    return text, None


def token_cnf(token: str) -> dict[str, Any] | None:
    """The ``cnf`` claim of a JWT access token, read without verification (None for opaque tokens).

    Only used to choose the ``Authorization`` scheme; the resource server does the verifying.
    """
    try:
        claims = parse_compact(token).payload
    except JWSError:
        return None
    cnf = claims.get("cnf")
    return cnf if isinstance(cnf, dict) else {}


def decode_proof(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a proof, for display (the signature is dropped)."""
    jws = parse_compact(proof)
    return jws.header, jws.payload


def check_http_url(url: str, what: str = "URL") -> str:
    """``url`` if it is an absolute http(s) URL (what ``htu`` must be, RFC 9449 §4.2)."""
    try:
        normalize_target(url)
    except URIError as exc:
        raise ClientError(f"{what} {url!r} is not an absolute http(s) URL ({exc})") from None
    return url


def htu_of(url: str) -> str:
    """RFC 9449 §4.2 ``htu``: the target URI without query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


# ------------------------------------------------------------------------------ WWW-Authenticate

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


# ------------------------------------------------------------------------------------ HTTP calls


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _network_error(url: str, exc: requests.RequestException) -> ClientError:
    target = _origin(url)
    if isinstance(exc, requests.exceptions.SSLError):
        return ClientError(f"TLS error talking to {target}: check --cacert / --cert ({_short(exc)})")
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


# --------------------------------------------------------------------------- authorization server


def metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 metadata URL (well-known inserted before the path), then the OIDC one."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    base = f"{parts.scheme}://{parts.netloc}"
    return [f"{base}/.well-known/oauth-authorization-server{path}",
            f"{base}{path}/.well-known/openid-configuration"]


def discover(issuer: str, *, session: requests.Session | None = None, verify: Verify = True,
             timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Fetch and check authorization server metadata (RFC 8414 §3; ``issuer`` must match, §3.3)."""
    check_http_url(issuer, "issuer")
    session = session or requests.Session()
    last = ""
    for url in metadata_urls(issuer):
        try:
            response = session.get(url, headers={"Accept": "application/json"}, verify=verify, timeout=timeout)
        except requests.RequestException as exc:
            raise _network_error(url, exc) from None
        if response.status_code == 404:
            last = f"{url} answered 404"
            continue
        if response.status_code != 200:
            raise ClientError(f"metadata at {url} answered HTTP {response.status_code}")
        try:
            metadata = response.json()
        except ValueError:
            raise ClientError(f"metadata at {url} is not JSON") from None
        if not isinstance(metadata, dict):
            raise ClientError(f"metadata at {url} is not a JSON object")
        if metadata.get("issuer") != issuer:
            raise ClientError(f"metadata at {url} is for issuer {metadata.get('issuer')!r}, not {issuer!r} "
                              "(RFC 8414 §3.3); pass the issuer exactly as the server names it")
        if not isinstance(metadata.get("token_endpoint"), str):
            raise ClientError(f"metadata at {url} has no token_endpoint")
        return metadata
    raise ClientError(f"no authorization server metadata for {issuer} ({last})")


@dataclass
class TokenResult:
    """A successful token response and how it was obtained."""

    response: dict[str, Any]
    endpoint: str
    proofs: list[str]
    nonce_retry: bool


def fetch_token(issuer: str, client_id: str, *, client_secret: str | None = None,
                dpop_key: Mapping[str, Any] | None = None, cert: ClientCertFiles = None,
                scope: str | None = None, resources: Sequence[str] = (), auth_method: str | None = None,
                verify: Verify = True, timeout: float = DEFAULT_TIMEOUT,
                on_proof: Callable[[str], None] | None = None) -> TokenResult:
    """Client credentials grant (RFC 6749 §4.4), DPoP-bound with ``dpop_key`` (RFC 9449 §5) and
    certificate-bound with ``cert`` (RFC 8705 §3, via ``mtls_endpoint_aliases`` §5)."""
    session = requests.Session()
    metadata = discover(issuer, session=session, verify=verify, timeout=timeout)
    endpoint = metadata["token_endpoint"]
    aliases = metadata.get("mtls_endpoint_aliases")
    if cert is not None and isinstance(aliases, dict) and isinstance(aliases.get("token_endpoint"), str):
        endpoint = aliases["token_endpoint"]
    form = [("grant_type", "client_credentials")]
    if scope:
        form.append(("scope", scope))
    form.extend(("resource", resource) for resource in resources)  # RFC 8707
    auth = None
    if client_secret is not None:
        method = auth_method or _pick_secret_method(metadata)
        if method == "client_secret_post":
            form += [("client_id", client_id), ("client_secret", client_secret)]
        else:
            auth = (client_id, client_secret)
    else:
        form.append(("client_id", client_id))  # tls_client_auth / self_signed_tls_client_auth, or public
    client = DpopClient(dpop_key, session=session, verify=verify, cert=cert, timeout=timeout, on_proof=on_proof)
    exchange = client.token_request(endpoint, form, auth=auth, dpop=dpop_key is not None)
    response = exchange.response
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200 or not isinstance(payload, dict) or "access_token" not in payload:
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            detail = payload["error"]
            if isinstance(payload.get("error_description"), str):
                detail += f": {payload['error_description']}"
        else:
            detail = "no token in the response"
        raise RequestRefused(f"token endpoint {endpoint} answered HTTP {response.status_code}: {detail}"[:400])
    return TokenResult(payload, endpoint, exchange.proofs, exchange.nonce_retry)


def _pick_secret_method(metadata: Mapping[str, Any]) -> str:
    supported = metadata.get("token_endpoint_auth_methods_supported")
    if isinstance(supported, list) and "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


def public_key_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint of a JWK's public part (a private JWK's private members never enter it)."""
    return thumbprint(public_jwk(jwk))
