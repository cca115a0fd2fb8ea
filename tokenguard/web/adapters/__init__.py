"""Proxy adapters: rebuild the original request from what nginx, Caddy, Traefik or Envoy sent.

An adapter reads an :class:`Incoming` sub-request (what the serving engine received, whatever the
engine) and returns the :class:`~tokenguard.core.request.AuthRequest` the core decides on. Adapters
are registered by the endpoint path they answer (``/auth``, ``/envoy/...``); a new proxy convention
is one module with an adapter class and one :func:`register_adapter` line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tokenguard.core.request import AuthRequest

if TYPE_CHECKING:
    from tokenguard.web.adapters.forwarded import ForwardedRequestReader

__all__ = ["Adapters", "HeaderSource", "Incoming", "ProxyAdapter", "register_adapter"]


class HeaderSource(Protocol):
    """Request header fields by case-insensitive name, every field line, names exactly as sent.

    A name is never rewritten: ``X_Foo`` is not ``X-Foo`` (an engine that cannot tell them apart must
    drop names with underscores before the app, as gunicorn does).
    """

    def values(self, name: str) -> tuple[str, ...]:
        """Every value of the field ``name``; an engine that folds repeated fields gives one joined value."""
        ...

    def fields(self) -> Iterable[tuple[str, str]]:
        """Every field line as (name as sent, value), for tokenguard's own size limits."""
        ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """The auth sub-request as the serving engine received it from the proxy.

    ``problem`` is set by a serving front that cannot give an exact picture of this request (a WSGI
    environ that may hold process environment variables); the adapters then refuse it.
    """

    method: str
    path: str  # the sub-request's own path: /auth, /envoy/...
    target: str  # the sub-request's own request target (path and query, as sent)
    scheme: str  # of the connection from the proxy
    peer: str | None  # the proxy's address
    headers: HeaderSource
    problem: str | None = None


class ProxyAdapter(Protocol):
    def read(self, incoming: Incoming) -> AuthRequest:
        """The original request; raises an :class:`~tokenguard.core.errors.OAuthError` if it cannot be read
        exactly (``invalid_request``, or the credential's own error for an oversized one)."""
        ...


AdapterFactory = Callable[["ForwardedRequestReader"], ProxyAdapter]


@dataclass(frozen=True)
class _Endpoint:
    path: str
    prefix: bool
    factory: AdapterFactory


_ENDPOINTS: list[_Endpoint] = []
_MODULES = ("auth_request", "envoy")


def register_adapter(path: str, *, prefix: bool = False) -> Callable[[AdapterFactory], AdapterFactory]:
    """Register the adapter that answers ``path`` (or every path under it, with ``prefix``)."""

    def add(factory: AdapterFactory) -> AdapterFactory:
        _ENDPOINTS.append(_Endpoint(path, prefix, factory))
        return factory

    return add


def _endpoints() -> list[_Endpoint]:
    """Every endpoint, its module imported on first use (one may have been imported directly before)."""
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return _ENDPOINTS


class Adapters:
    """Every registered adapter, built once for a deployment's trust and certificate settings."""

    def __init__(self, reader: ForwardedRequestReader) -> None:
        self._exact: dict[str, ProxyAdapter] = {}
        self._prefixed: list[tuple[str, ProxyAdapter]] = []
        for endpoint in _endpoints():
            adapter = endpoint.factory(reader)
            if endpoint.prefix:
                self._prefixed.append((endpoint.path, adapter))
            self._exact[endpoint.path] = adapter

    def for_path(self, path: str) -> ProxyAdapter | None:
        """The adapter answering ``path``, or None (then the path is not an auth endpoint)."""
        adapter = self._exact.get(path)
        if adapter is not None:
            return adapter
        for prefix, candidate in self._prefixed:
            if path.startswith(prefix + "/"):
                return candidate
        return None
