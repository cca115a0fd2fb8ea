"""Outbound HTTP for the core's injected sources: issuer metadata and JWKS fetches, introspection calls.

The core never imports an HTTP client: :mod:`tokenguard.settings.wiring` hands it these functions, and
tests hand it in-process fakes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

from tokenguard.core.errors import VerifierUnavailable
from tokenguard.core.introspection import PostForm
from tokenguard.core.metadata import FetchError, FetchJson

MAX_DOCUMENT_BYTES = 1 << 20  # an issuer's metadata or JWKS larger than this is refused
MAX_ABANDONED = 4  # fetches of one URL past their deadline that may still run in the background


def http_fetch_json(timeout: float = 3.0, session: requests.Session | None = None,
                    max_bytes: int = MAX_DOCUMENT_BYTES) -> FetchJson:
    """A JSON fetcher with a total deadline (connect, headers and body within ``timeout`` seconds, however
    slowly the server trickles), a size cap, and no redirects to other origins.

    The request runs in a helper thread that the caller stops waiting for at the deadline; a helper that
    outlives it ends at its own next read (body reads check the deadline), and at most
    :data:`MAX_ABANDONED` per URL may linger before further fetches of that URL are refused at once.
    """
    http = session or requests.Session()
    running: dict[str, int] = {}
    guard = threading.Lock()

    def get(url: str, deadline: float) -> Mapping[str, Any]:
        with http.get(url, timeout=timeout, allow_redirects=False, stream=True,
                      headers={"Accept": "application/json", "Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code} from {url}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"answer from {url} is larger than {max_bytes} bytes")
            read = getattr(response.raw, "read1", response.raw.read)  # read1: at most one socket read
            body = bytearray()
            while chunk := read(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(f"answer from {url} is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"no complete answer from {url} within {timeout:g} s")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise FetchError(f"non-JSON answer from {url}") from exc
        if not isinstance(document, dict):
            raise FetchError(f"answer from {url} is not a JSON object")
        return document

    def fetch(url: str) -> Mapping[str, Any]:
        with guard:
            if running.get(url, 0) > MAX_ABANDONED:
                raise FetchError(f"earlier fetches from {url} are still hanging")
            running[url] = running.get(url, 0) + 1
        deadline = time.monotonic() + timeout
        outcome: list[Mapping[str, Any] | FetchError] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append(get(url, deadline))
            except FetchError as exc:
                outcome.append(exc)
            except Exception as exc:  # network, TLS, protocol: the type names the cause, never the message
                outcome.append(FetchError(f"{type(exc).__name__} fetching {url}"))
            finally:
                with guard:
                    running[url] -= 1
                done.set()

        threading.Thread(target=work, name="tokenguard-fetch", daemon=True).start()
        if not done.wait(timeout) or not outcome:
            raise FetchError(f"no complete answer from {url} within {timeout:g} s")
        result = outcome[0]
        if isinstance(result, FetchError):
            raise result
        return result

    return fetch


def http_post_form(timeout: float = 3.0, session: requests.Session | None = None) -> PostForm:
    http = session or requests.Session()

    def post(url: str, form: Mapping[str, str], auth: tuple[str, str]) -> Mapping[str, Any]:
        try:
            response = http.post(url, data=dict(form), auth=auth, timeout=timeout, allow_redirects=False,
                                 headers={"Accept": "application/json"})
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise VerifierUnavailable("introspection_unavailable",
                                      f"introspection failed: {type(exc).__name__}") from exc
        if response.status_code != 200 or not isinstance(body, dict):
            raise VerifierUnavailable("introspection_unavailable",
                                      f"introspection answered HTTP {response.status_code}")
        return body

    return post
