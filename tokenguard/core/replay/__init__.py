"""DPoP ``jti`` replay stores (RFC 9449 §11.1) behind one small interface, looked up by URL scheme.

``first_use(key, ttl)`` atomically records a key and says whether it was new; ``seen(key)`` only asks
(``tokenguard explain`` reads the store, never writes it). The stores:

* ``memory`` (:mod:`.memory`): one process only (tests, ``--dev``); bounded, expiring.
* ``embedded`` / ``sqlite:///PATH`` (:mod:`.sqlite`, default): SQLite in WAL mode under the state
  directory, shared by every worker process on the host.
* ``redis://`` / ``rediss://`` / ``unix://`` / ``redis+cluster://`` (:mod:`.redis`): many hosts.

A store that cannot answer raises :class:`~tokenguard.core.errors.ReplayStoreUnavailable`; the
verifier then fails closed. A store that is full refuses too: evicting live entries would reopen the
replay window. A new store is one module that registers its schemes with :func:`register_store`.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tokenguard.core.errors import ReplayStoreUnavailable

__all__ = ["ReplayStore", "ReplayStoreUnavailable", "open_replay_store", "register_store", "store_problem"]


class ReplayStore(Protocol):
    def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was not already recorded."""
        ...

    def seen(self, key: str) -> bool:
        """Whether ``key`` is recorded and unexpired, recording nothing (read-only)."""
        ...

    def ping(self) -> None:
        """Raise :class:`ReplayStoreUnavailable` unless the store is reachable."""
        ...


StoreFactory = Callable[[str, Path, Callable[[], float]], ReplayStore]
_STORES: dict[str, StoreFactory] = {}
_USAGES: list[str] = []  # how each registered store is written, for error messages
_MODULES = ("memory", "sqlite", "redis")


def register_store(*schemes: str, usage: str) -> Callable[[StoreFactory], StoreFactory]:
    """Register a factory for URL schemes (or bare words): ``@register_store("redis", usage="redis://…")``."""

    def add(factory: StoreFactory) -> StoreFactory:
        for scheme in schemes:
            _STORES[scheme] = factory
        _USAGES.append(usage)
        return factory

    return add


def _registry() -> dict[str, StoreFactory]:
    """Every store, its module imported on first use (one may have been imported directly before)."""
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return _STORES


def scheme_of(spec: str) -> str:
    """``memory`` and ``embedded`` are bare words; everything else is a URL named by its scheme."""
    scheme, sep, _ = spec.partition("://")
    return scheme.lower() if sep else spec


def store_problem(spec: str) -> str | None:
    """Why ``spec`` names no known store (for configuration errors), or None."""
    if scheme_of(spec) in _registry():
        return None
    *first, last = _USAGES
    return f"must be {', '.join(first)} or {last}"


def open_replay_store(spec: str, state_dir: str | os.PathLike[str], *,
                      clock: Callable[[], float] = time.time) -> ReplayStore:
    """Open the store ``spec`` names (``memory``, ``embedded``, ``sqlite:///PATH`` or a Redis URL)."""
    factory = _registry().get(scheme_of(spec))
    if factory is None:
        raise ValueError(f"replay store {spec!r}: {store_problem(spec)}")
    return factory(spec, Path(state_dir), clock)
