"""``seen(key)``: the replay stores answer ``explain`` without recording anything (read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Clock

from tokenguard.core.replay import ReplayStore
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.replay.sqlite import SqliteReplayStore


@pytest.fixture(params=["memory", "sqlite"])
def store_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ReplayStore, Clock]:
    clock = Clock(1_700_000_000)
    if request.param == "memory":
        return MemoryReplayStore(clock=clock), clock
    return SqliteReplayStore(tmp_path / "replay.sqlite3", clock=clock), clock


def test_seen_reads_and_never_records(store_and_clock: tuple[ReplayStore, Clock]) -> None:
    store, clock = store_and_clock
    assert store.seen("k") is False
    assert store.seen("k") is False  # asking twice recorded nothing
    assert store.first_use("k", 75) is True  # so the first use is still the first
    assert store.seen("k") is True
    clock.advance(76)
    assert store.seen("k") is False  # expired entries are not "seen"
    assert store.first_use("k", 75) is True
