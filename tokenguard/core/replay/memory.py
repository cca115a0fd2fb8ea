"""``memory``: one process only (tests, ``--dev``); bounded, expiring, and full means refuse."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay import ReplayStore, register_store


class MemoryReplayStore:
    """In-process store. Entries are kept in expiry order (constant TTL per verifier)."""

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def first_use(self, key: str, ttl: float) -> bool:
        now = self._clock()
        with self._lock:
            entries = self._entries
            while entries:
                oldest_key, expires = next(iter(entries.items()))
                if expires > now:
                    break
                del entries[oldest_key]
            current = entries.get(key)
            if current is not None and current > now:
                return False
            if len(entries) >= self._max:
                raise ReplayStoreUnavailable("memory replay store is full")
            entries[key] = now + ttl
            entries.move_to_end(key)
            return True

    def seen(self, key: str) -> bool:
        with self._lock:
            expires = self._entries.get(key)
        return expires is not None and expires > self._clock()

    def ping(self) -> None:
        return None


@register_store("memory", usage="memory")
def _open(spec: str, state_dir: Path, clock: Callable[[], float]) -> ReplayStore:
    return MemoryReplayStore(clock=clock)
