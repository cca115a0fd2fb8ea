"""DPoP ``jti`` replay stores (RFC 9449 §11.1) behind one small interface, looked up by URL scheme.

``first_use(key, ttl)`` atomically records a key and says whether it was new; ``seen(key)`` only asks
(``tokenguard explain`` reads the store, never writes it). The stores:

* ``memory`` (:mod:`.memory`): one process only (tests, ``--dev``); bounded, expiring.
* ``embedded`` (:mod:`.embedded`, default): LMDB under the state directory, shared by every worker
  process on the host; an exact cap checked on every insert, expiry by dropping whole time buckets.
* ``redis://`` / ``rediss://`` / ``unix://`` / ``redis+cluster://`` (:mod:`.redis`): many hosts.

A store cannot silently forget. Each has an **epoch** (:meth:`ReplayStore.epoch_for`): the time from
which its memory is complete. A store that starts empty, is found damaged, is flushed, or (Redis) comes
back without its data or fails over starts a new epoch; the DPoP verifier then refuses every proof that
could have been used before it (``iat < epoch + iat_future``, reason ``replay_store_reset``). A store
that cannot answer raises :class:`~tokenguard.core.errors.ReplayStoreUnavailable` and one that is full
:class:`~tokenguard.core.errors.ReplayStoreFull`; the verifier then fails closed (evicting live entries
would reopen the replay window). A new store is one module that registers its schemes with
:func:`register_store`.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tokenguard.core.errors import ReplayStoreFull, ReplayStoreUnavailable

__all__ = ["ReplayStore", "ReplayStoreFull", "ReplayStoreUnavailable", "StoreOptions", "StoreStatus",
           "open_replay_store", "register_store", "store_problem"]

DEFAULT_MAX_ENTRIES = 1_000_000  # ~80 MB in the embedded store; size as peak new proofs/s x (window + 30 s)
MAX_MAX_ENTRIES = 100_000_000  # the embedded store maps 192 B per entry: 19 GB of (sparse) file
DEFAULT_MAX_TTL = 3600.0  # the longest any key is kept; the DPoP window is ~76-196 s, idp_mock's assertions 661 s


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How to open a store: the clock, the cap, the longest TTL, and the Redis-only choices."""

    clock: Callable[[], float] = time.time
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_ttl: float = DEFAULT_MAX_TTL
    allow_eviction: bool = False  # Redis: accept a maxmemory-policy that can drop live keys (warned)
    wait_replicas: int = 0  # Redis: replicas that must hold a new key before it counts as recorded


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """A store's own account of itself, for ``/readyz`` and ``/metrics`` (computing it never raises)."""

    name: str  # which store, never a password: "embedded /var/lib/tokenguard/replay", "redis 10.0.0.5:6379"
    problem: ReplayStoreUnavailable | None = None  # why it cannot record now (ReplayStoreFull when full)
    epoch: float = 0.0  # the newest epoch it knows
    reset: str | None = None  # why that epoch began ("missing", "damaged at open: …", "flushed or restarted")
    entries: int | None = None
    capacity: int | None = None
    notes: tuple[str, ...] = field(default=())  # warnings that do not stop it (an allowed eviction policy)


class ReplayStore(Protocol):
    def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for at least ``ttl`` seconds; True if it was not already recorded."""
        ...

    def epoch_for(self, key: str) -> float:
        """When the store's memory of ``key``'s part began. Read it *after* ``first_use`` returned True:
        it is never older than the epoch that call saw (epochs only move forward)."""
        ...

    def seen(self, key: str) -> bool:
        """Whether ``key`` is recorded and unexpired, recording nothing (``tokenguard explain``)."""
        ...

    def ping(self) -> None:
        """Raise :class:`ReplayStoreUnavailable` (or :class:`ReplayStoreFull`) unless the store can record."""
        ...

    def status(self) -> StoreStatus: ...

    def close(self) -> None: ...


class PingByStatus:
    """``ping`` for stores whose :meth:`status` already says everything."""

    def status(self) -> StoreStatus:
        raise NotImplementedError

    def ping(self) -> None:
        problem = self.status().problem
        if problem is not None:
            raise problem


StoreFactory = Callable[[str, Path, StoreOptions], ReplayStore]
_STORES: dict[str, StoreFactory] = {}
_USAGES: list[str] = []  # how each registered store is written, for error messages
_MODULES = ("memory", "embedded", "redis")


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


def open_replay_store(spec: str, state_dir: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                      options: StoreOptions | None = None) -> ReplayStore:
    """Open the store ``spec`` names (``memory``, ``embedded`` or a Redis URL); ``options`` (its clock
    included) when given, else the defaults with ``clock``."""
    factory = _registry().get(scheme_of(spec))
    if factory is None:
        raise ValueError(f"replay store {spec!r}: {store_problem(spec)}")
    if options is None:
        options = StoreOptions(clock=clock)
    return factory(spec, Path(state_dir), options)
