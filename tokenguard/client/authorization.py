"""Talking to an authorization server: RFC 8414 discovery and token requests (client credentials).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from tokenguard.client.errors import ClientError, RequestRefused
from tokenguard.client.http import (
    DEFAULT_TIMEOUT,
    ClientCertFiles,
    DpopClient,
    Verify,
    _network_error,
)
from tokenguard.client.tokens import check_http_url
from tokenguard.core.metadata import FetchError
from tokenguard.core.metadata import discover as metadata_discover


def discover(issuer: str, *, session: requests.Session | None = None, verify: Verify = True,
             timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Fetch and check authorization server metadata (RFC 8414 §3; ``issuer`` must match, §3.3)."""
    check_http_url(issuer, "issuer")
    session = session or requests.Session()

    def fetch(url: str) -> Mapping[str, Any]:
        try:
            response = session.get(url, headers={"Accept": "application/json"}, verify=verify, timeout=timeout)
        except requests.RequestException as exc:  # the next metadata URL is on the same server: stop here
            raise _network_error(url, exc) from None
        if response.status_code != 200:
            raise FetchError(f"{url} answered HTTP {response.status_code}")
        try:
            metadata = response.json()
        except ValueError:
            raise FetchError(f"metadata at {url} is not JSON") from None
        if not isinstance(metadata, dict):
            raise FetchError(f"metadata at {url} is not a JSON object")
        return metadata

    try:
        metadata = dict(metadata_discover(issuer, fetch))
    except ClientError as exc:
        raise ClientError(f"no authorization server metadata for {issuer}: {exc}") from None
    except FetchError as exc:
        raise ClientError(f"no authorization server metadata for {issuer}: {exc}; pass the issuer exactly "
                          "as the server names it") from None
    if not isinstance(metadata.get("token_endpoint"), str):
        raise ClientError(f"metadata of {issuer} has no token_endpoint")
    return metadata


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
        error = payload.get("error") if isinstance(payload, dict) else None
        if error == "invalid_client" or (response.status_code == 401 and client_secret is not None):
            said = payload.get("error_description") if isinstance(payload, dict) else None
            raise RequestRefused(
                f"client authentication failed: {endpoint} answered HTTP {response.status_code} "
                f"{error or ''}".rstrip() + f"; check the client id ({client_id}) and its secret"
                + (" and --auth-method" if client_secret is not None else " or certificate")
                + (f" (the server said: {_cut(said, 100)})" if isinstance(said, str) and said else ""))
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


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."
