"""``redis://`` / ``rediss://`` / ``unix://`` / ``redis+cluster://``: any number of workers and hosts.

``SET key 1 NX PX ttl`` is atomic in Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay import ReplayStore, register_store


class RedisReplayStore:
    """Store shared by hosts: ``SET key 1 NX PX ttl`` is atomic in Redis."""

    def __init__(self, url: str, prefix: str = "tokenguard:jti:", timeout: float = 0.5) -> None:
        import redis  # imported here: only deployments that use Redis need the client loaded

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._client: Any
        if url.startswith("redis+cluster://"):
            from redis.cluster import RedisCluster

            self._client = RedisCluster.from_url("redis://" + url[len("redis+cluster://"):],
                                                 socket_timeout=timeout, socket_connect_timeout=timeout)
        else:
            self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                                health_check_interval=30)
        self._prefix = prefix

    def first_use(self, key: str, ttl: float) -> bool:
        try:
            return bool(self._client.set(self._prefix + key, b"1", nx=True, px=max(1, int(ttl * 1000))))
        except self._errors as exc:
            raise ReplayStoreUnavailable(f"redis replay store: {type(exc).__name__}") from exc

    def seen(self, key: str) -> bool:
        try:
            return bool(self._client.exists(self._prefix + key))
        except self._errors as exc:
            raise ReplayStoreUnavailable(f"redis replay store: {type(exc).__name__}") from exc

    def ping(self) -> None:
        try:
            self._client.ping()
        except self._errors as exc:
            raise ReplayStoreUnavailable(f"redis replay store: {type(exc).__name__}") from exc


@register_store("redis", "rediss", "unix", "redis+cluster",
                usage="a redis://, rediss://, unix:// or redis+cluster:// URL")
def _open(spec: str, state_dir: Path, clock: Callable[[], float]) -> ReplayStore:
    return RedisReplayStore(spec)
