"""Replay stores (RFC 9449 §11.1, R-09): memory, embedded SQLite across processes, Redis for real."""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay import open_replay_store
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.replay.redis import RedisReplayStore
from tokenguard.core.replay.sqlite import SqliteReplayStore

from .helpers import Clock


# -- memory ----------------------------------------------------------------------------------------
def test_memory_first_use_and_replay() -> None:
    store = MemoryReplayStore(clock=Clock())
    assert store.first_use("a", 75) is True
    assert store.first_use("a", 75) is False
    assert store.first_use("b", 75) is True


def test_memory_expiry_with_fake_clock() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    assert store.first_use("a", 75)
    clock.advance(74.9)
    assert not store.first_use("a", 75)
    clock.advance(0.2)
    assert store.first_use("a", 75)
    assert not store.first_use("a", 75)


def test_memory_full_store_refuses_rather_than_evicting() -> None:
    clock = Clock()
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for key in "abc":
        assert store.first_use(key, 75)
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use("d", 75)
    assert not store.first_use("a", 75)  # live entries were kept
    clock.advance(76)
    assert store.first_use("d", 75)  # expired entries make room


# -- embedded SQLite -------------------------------------------------------------------------------
def test_sqlite_first_use_expiry_and_reuse(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteReplayStore(tmp_path / "state" / "replay.sqlite3", clock=clock)
    assert store.first_use("k", 75) and not store.first_use("k", 75)
    clock.advance(76)
    assert store.first_use("k", 75)  # an expired row is reused
    assert not store.first_use("k", 75)
    store.ping()
    other = SqliteReplayStore(tmp_path / "state" / "replay.sqlite3", clock=clock)
    assert not other.first_use("k", 75)  # a second instance on the same file sees it


def test_sqlite_full_store_refuses(tmp_path: Path) -> None:
    store = SqliteReplayStore(tmp_path / "r.sqlite3", max_entries=10, clock=Clock())
    store.PURGE_EVERY = 5
    with pytest.raises(ReplayStoreUnavailable):
        for i in range(100):
            store.first_use(f"k{i}", 75)


def test_sqlite_unwritable_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SqliteReplayStore(path, clock=Clock())
    store._connection().execute("DROP TABLE replay")
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use("k", 75)


def _worker(path: str, barrier, results, index: int) -> None:
    store = SqliteReplayStore(path)
    barrier.wait()
    results[index] = sum(store.first_use(f"jti-{i}", 75) for i in range(2000))


def test_sqlite_damaged_file_is_set_aside(tmp_path: Path) -> None:
    """After an OS crash under synchronous=OFF the file may be garbage: start afresh, keep the evidence."""
    path = tmp_path / "replay.sqlite3"
    path.write_bytes(b"this is not an SQLite database" * 100)
    store = SqliteReplayStore(path)
    assert store.first_use("k", 60) is True
    assert store.first_use("k", 60) is False
    assert (tmp_path / "replay.sqlite3.corrupt").read_bytes().startswith(b"this is not")


def test_sqlite_shared_by_two_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "state" / "replay.sqlite3")
    barrier, results = ctx.Barrier(2), ctx.Array("i", 2)
    procs = [ctx.Process(target=_worker, args=(path, barrier, results, i)) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert results[0] + results[1] == 2000
    assert SqliteReplayStore(path).first_use("jti-7", 75) is False


def test_open_replay_store_specs(tmp_path: Path) -> None:
    assert isinstance(open_replay_store("memory", tmp_path), MemoryReplayStore)
    embedded = open_replay_store("embedded", tmp_path)
    assert isinstance(embedded, SqliteReplayStore) and embedded.path == tmp_path / "replay.sqlite3"
    explicit = open_replay_store(f"sqlite://{tmp_path}/x.db", tmp_path)  # sqlite:///abs/path
    assert isinstance(explicit, SqliteReplayStore) and explicit.path == tmp_path / "x.db"
    with pytest.raises(ValueError):
        open_replay_store("mongodb://nope", tmp_path)


# -- Redis (a real redis-server) -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(_free_port())
    server.start()
    yield server
    server.stop()


def test_redis_nx_semantics(redis_server: RedisServer) -> None:
    store = open_replay_store(f"redis://127.0.0.1:{redis_server.port}/0", "/nonexistent")
    assert isinstance(store, RedisReplayStore)
    store.ping()
    assert store.first_use("k", 75) is True
    assert store.first_use("k", 75) is False
    other = RedisReplayStore(f"redis://127.0.0.1:{redis_server.port}/0")
    assert other.first_use("k", 75) is False  # a second worker/host sees it
    assert other.first_use("k2", 75) is True


def test_redis_ttl_expiry(redis_server: RedisServer) -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{redis_server.port}/0")
    assert store.first_use("short", 0.2)
    assert not store.first_use("short", 0.2)
    ttl = store._client.pttl("tokenguard:jti:short")
    assert 0 < ttl <= 200
    deadline = time.monotonic() + 10
    while not store.first_use("short", 0.2):
        assert time.monotonic() < deadline, "key never expired"
        time.sleep(0.05)


def test_redis_down_then_back(redis_server: RedisServer) -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{redis_server.port}/0")
    assert store.first_use("before", 75)
    redis_server.stop()
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use("during", 75)
    with pytest.raises(ReplayStoreUnavailable):
        store.ping()
    redis_server.start()
    assert store.first_use("after", 75) is True  # same store object, reconnected
    assert store.first_use("after", 75) is False
