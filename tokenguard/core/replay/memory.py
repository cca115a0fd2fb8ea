"""``memory``: one process only (tests, ``--dev``); bounded, expiring, and full means refuse."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from tokenguard.core.errors import ReplayStoreFull
from tokenguard.core.replay import PingByStatus, ReplayStore, StoreOptions, StoreStatus, register_store


class MemoryReplayStore(PingByStatus):
    """In-process store. Entries are kept in expiry order (constant TTL per verifier).

    Its memory is its process's: it is refused with more than one worker, and a restart forgets (the
    README says so). ``epoch`` is therefore what the caller says it is (default 0: it claims no reset).
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time, *,
                 epoch: float = 0.0) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self.epoch = epoch

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest_key, expires = next(iter(entries.items()))
            if expires > now:
                break
            del entries[oldest_key]

    def first_use(self, key: str, ttl: float) -> bool:
        now = self._clock()
        with self._lock:
            self._expire(now)
            entries = self._entries
            current = entries.get(key)
            if current is not None and current > now:
                return False
            if len(entries) >= self._max:
                raise ReplayStoreFull(f"memory replay store holds {len(entries)} of {self._max} entries")
            entries[key] = now + ttl
            entries.move_to_end(key)
            return True

    def epoch_for(self, key: str) -> float:
        return self.epoch

    def seen(self, key: str) -> bool:
        with self._lock:
            expires = self._entries.get(key)
            return expires is not None and expires > self._clock()

    def status(self) -> StoreStatus:
        with self._lock:
            self._expire(self._clock())
            held = len(self._entries)
        problem = ReplayStoreFull(f"memory replay store holds {held} of {self._max} entries") \
            if held >= self._max else None
        return StoreStatus("memory", problem=problem, epoch=self.epoch, entries=held, capacity=self._max)

    def close(self) -> None:
        return None


@register_store("memory", usage="memory")
def _open(spec: str, state_dir: Path, options: StoreOptions) -> ReplayStore:
    return MemoryReplayStore(max_entries=options.max_entries, clock=options.clock)
