"""A least-recently-used cache bounded by entries *and* by bytes.

The caches on the hot path (route matches, ``htu`` normalisation, DPoP proof headers, imported keys)
are keyed by what clients send. A bound on the entry count alone lets a client that sends large unique
values grow every worker by the count times the largest value; a byte budget caps what any sequence of
requests can make a cache hold. Sizes are the caller's estimate of what an entry keeps alive.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """LRU map with at most ``max_entries`` entries and ``max_bytes`` of estimated size.

    An entry larger than the whole budget is not stored. Thread-safe (gthread workers share it).
    """

    __slots__ = ("_bytes", "_entries", "_lock", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Remember ``value`` under ``key``; ``size`` estimates the bytes the entry holds."""
        if size > self.max_bytes or self.max_entries < 1:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    @property
    def size_bytes(self) -> int:
        """The estimated bytes held now (never more than ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
