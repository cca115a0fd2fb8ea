"""``embedded`` / ``sqlite:///PATH``: SQLite in WAL mode, shared by every worker process on the host.

Atomic through SQLite's write lock, no server to run.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay import ReplayStore, register_store


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

    def seen(self, key: str) -> bool:
        try:
            row = self._connection().execute("SELECT 1 FROM replay WHERE key = ? AND expires > ?",
                                              (key, self._clock())).fetchone()
        except sqlite3.Error as exc:
            raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}") from exc
        return row is not None

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT 1 FROM replay LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}") from exc


@register_store("embedded", usage="embedded")
def _open_embedded(spec: str, state_dir: Path, clock: Callable[[], float]) -> ReplayStore:
    return SqliteReplayStore(state_dir / "replay.sqlite3", clock=clock)


@register_store("sqlite", usage="sqlite:///PATH")
def _open_file(spec: str, state_dir: Path, clock: Callable[[], float]) -> ReplayStore:
    path = spec[len("sqlite://"):]
    if not path.startswith("/") or path == "/":
        raise ValueError("sqlite:///PATH needs an absolute path")
    return SqliteReplayStore(path, clock=clock)
