"""``seen(key)``: the replay stores answer ``explain`` without recording anything (read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Clock

from tokenguard.core.replay import ReplayStore
from tokenguard.core.replay.embedded import EmbeddedReplayStore
from tokenguard.core.replay.memory import MemoryReplayStore


@pytest.fixture(params=["memory", "embedded"])
def store_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ReplayStore, Clock]:
    clock = Clock(1_700_000_000)
    if request.param == "memory":
        return MemoryReplayStore(clock=clock), clock
    return EmbeddedReplayStore(tmp_path / "replay", max_entries=1000, clock=clock), clock


def test_seen_reads_and_never_records(store_and_clock: tuple[ReplayStore, Clock]) -> None:
    store, clock = store_and_clock
    assert store.seen("k") is False
    assert store.seen("k") is False  # asking twice recorded nothing
    assert store.first_use("k", 75) is True  # so the first use is still the first
    assert store.seen("k") is True
    clock.advance(76 + 30)  # past its TTL (the embedded store keeps a key up to one 30 s bucket longer)
    assert store.seen("k") is False  # expired entries are not "seen"
    assert store.first_use("k", 75) is True
