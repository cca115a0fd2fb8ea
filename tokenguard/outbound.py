"""Outbound HTTP for the core's injected sources: issuer metadata and JWKS fetches, introspection calls.

The core never imports an HTTP client: :mod:`tokenguard.settings.wiring` hands it these functions, and
tests hand it in-process fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from tokenguard.core.errors import VerifierUnavailable
from tokenguard.core.introspection import PostForm
from tokenguard.core.metadata import FetchError, FetchJson


def http_fetch_json(timeout: float = 3.0, session: requests.Session | None = None) -> FetchJson:
    """A JSON fetcher with a bounded timeout and no redirects to other origins."""
    http = session or requests.Session()

    def fetch(url: str) -> Mapping[str, Any]:
        try:
            response = http.get(url, timeout=timeout, allow_redirects=False,
                                headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise FetchError(f"{type(exc).__name__} fetching {url}") from exc
        if response.status_code != 200:
            raise FetchError(f"HTTP {response.status_code} from {url}")
        try:
            body = response.json()
        except ValueError as exc:
            raise FetchError(f"non-JSON answer from {url}") from exc
        if not isinstance(body, dict):
            raise FetchError(f"answer from {url} is not a JSON object")
        return body

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
