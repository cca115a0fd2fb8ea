"""``seen(key)`` on a real redis-server: read-only (EXISTS), and a down server fails closed."""

from __future__ import annotations

import harness
import pytest

from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay.redis import RedisReplayStore

pytestmark = pytest.mark.integration


def test_redis_seen_is_read_only(redis_server: harness.ManagedProcess) -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{redis_server.port}/0")
    assert store.seen("k") is False and store.seen("k") is False
    assert store.first_use("k", 75) is True
    assert store.seen("k") is True and store.first_use("k", 75) is False
    redis_server.stop()
    with pytest.raises(ReplayStoreUnavailable):
        store.seen("k")
