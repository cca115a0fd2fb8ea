"""DPoP ``jti`` replay stores (RFC 9449 §11.1) behind one small interface.

``first_use(key, ttl)`` atomically records a key and says whether it was new. Three stores:

* ``memory``: one process only (tests, ``--dev``); bounded, expiring.
* ``embedded`` (default): SQLite in WAL mode under the state directory, shared by every worker
  process on the host; atomic through SQLite's write lock, no server to run.
* ``redis://`` / ``rediss://`` / ``unix://``: any number of workers and hosts (``SET NX PX``).

A store that cannot answer raises :class:`ReplayStoreUnavailable`; the verifier then fails closed.
A store that is full refuses too: evicting live entries would reopen the replay window.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class ReplayStoreUnavailable(Exception):
    """The store could not record the key; nothing may be allowed without replay protection."""


class ReplayStore(Protocol):
    def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was not already recorded."""
        ...

    def ping(self) -> None:
        """Raise :class:`ReplayStoreUnavailable` unless the store is reachable."""
        ...


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
            expires = entries.get(key)
            if expires is not None and expires > now:
                return False
            if len(entries) >= self._max:
                raise ReplayStoreUnavailable("memory replay store is full")
            entries[key] = now + ttl
            entries.move_to_end(key)
            return True

    def ping(self) -> None:
        return None


def wal_connection(local: threading.local, path: str | os.PathLike[str],
                   synchronous: str = "NORMAL") -> sqlite3.Connection:
    """This thread's connection to a WAL-mode SQLite file, reopened after a fork (never shared)."""
    conn: sqlite3.Connection | None = getattr(local, "conn", None)
    if conn is None or getattr(local, "pid", None) != os.getpid():
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        local.conn, local.pid = conn, os.getpid()
    return conn


class SqliteReplayStore:
    """Embedded store shared by all processes on the host (SQLite WAL, one connection per thread)."""

    PURGE_EVERY = 1000

    def __init__(self, path: str | os.PathLike[str], max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max = max_entries
        self._clock = clock
        self._local = threading.local()
        self._count = 0
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self._connection().execute(
                    "CREATE TABLE IF NOT EXISTS replay (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID")
                break
            except sqlite3.OperationalError:
                # Workers start together, and SQLite answers a concurrent switch to WAL (or creation of
                # the table) with "database is locked" at once instead of waiting: retry briefly.
                self._local.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            except sqlite3.DatabaseError:
                # Not a database any more (a power loss under synchronous=OFF): its entries outlived their
                # window while the host was down, so set the file aside and start afresh.
                self._local.conn = None
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{self.path}{suffix}", f"{self.path}.corrupt{suffix}")
                if time.monotonic() > deadline:
                    raise

    def _connection(self) -> sqlite3.Connection:
        # synchronous=OFF: every write still reaches the OS at commit, so a crashed or killed worker loses
        # nothing; only an OS crash could damage the file, which the constructor then replaces.
        return wal_connection(self._local, self.path, synchronous="OFF")

    def first_use(self, key: str, ttl: float) -> bool:
        now = self._clock()
        try:
            conn = self._connection()
            self._count += 1
            if self._count % self.PURGE_EVERY == 0:
                conn.execute("DELETE FROM replay WHERE expires <= ?", (now,))
                (size,) = conn.execute("SELECT count(*) FROM replay").fetchone()
                if size >= self._max:
                    raise ReplayStoreUnavailable("embedded replay store is full")
            cursor = conn.execute(
                "INSERT INTO replay (key, expires) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE replay.expires <= ?",
                (key, now + ttl, now))
            return cursor.rowcount == 1
        except sqlite3.Error as exc:
            raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}") from exc

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT 1 FROM replay LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}") from exc


class RedisReplayStore:
    """Store shared by hosts: ``SET key 1 NX PX ttl`` is atomic in Redis."""

    def __init__(self, url: str, prefix: str = "tokenguard:jti:", timeout: float = 0.5) -> None:
        import redis  # imported here: only deployments that use Redis need the client loaded

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
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

    def ping(self) -> None:
        try:
            self._client.ping()
        except self._errors as exc:
            raise ReplayStoreUnavailable(f"redis replay store: {type(exc).__name__}") from exc


def open_replay_store(spec: str, state_dir: str | os.PathLike[str], *,
                      clock: Callable[[], float] = time.time) -> ReplayStore:
    """``memory``, ``embedded`` (SQLite under ``state_dir``), ``sqlite:///path`` or a Redis URL."""
    if spec == "memory":
        return MemoryReplayStore(clock=clock)
    if spec == "embedded":
        return SqliteReplayStore(Path(state_dir) / "replay.sqlite3", clock=clock)
    if spec.startswith("sqlite:///"):
        return SqliteReplayStore(spec[len("sqlite://"):], clock=clock)
    if spec.startswith(("redis://", "rediss://", "unix://", "redis+cluster://")):
        return RedisReplayStore(spec)
    raise ValueError("replay store must be 'memory', 'embedded', 'sqlite:///PATH' or a redis:// URL")
