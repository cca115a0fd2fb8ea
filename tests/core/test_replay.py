"""Replay stores (RFC 9449 §11.1, R-09): memory; the embedded LMDB store across threads, processes, damage,
its cap and expiry; the epoch rule in the DPoP verifier. Redis is tested for real in
``tests/integration/test_replay_redis.py``."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Clock

from tokenguard.core.errors import ReplayStoreFull, ReplayStoreUnavailable
from tokenguard.core.replay import StoreOptions, open_replay_store, store_problem
from tokenguard.core.replay import embedded as embedded_module
from tokenguard.core.replay.embedded import IDENTITY_CHECK_INTERVAL, EmbeddedReplayStore
from tokenguard.core.replay.memory import MemoryReplayStore

CTX = mp.get_context("fork")
REPO = Path(__file__).resolve().parents[2]


def keys(n: int, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    return [r.randbytes(32).hex()[:43] for _ in range(n)]


def open_store(path: Path, **kw: object) -> EmbeddedReplayStore:
    kw.setdefault("max_entries", 100_000)
    kw.setdefault("max_ttl", 600.0)
    return EmbeddedReplayStore(path, **kw)  # type: ignore[arg-type]


def past_identity_check() -> None:
    time.sleep(IDENTITY_CHECK_INTERVAL + 0.05)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "replay"


# -- memory ----------------------------------------------------------------------------------------
def test_memory_first_use_and_replay() -> None:
    store = MemoryReplayStore(clock=Clock())
    assert store.first_use("a", 75) is True
    assert store.first_use("a", 75) is False
    assert store.first_use("b", 75) is True
    assert store.seen("a") and not store.seen("c")
    assert store.epoch_for("a") == 0.0  # one process's memory: it claims no reset (README)


def test_memory_expiry_with_fake_clock() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    assert store.first_use("a", 75)
    clock.advance(74.9)
    assert not store.first_use("a", 75)
    clock.advance(0.2)
    assert not store.seen("a")
    assert store.first_use("a", 75)
    assert not store.first_use("a", 75)


def test_memory_full_store_refuses_rather_than_evicting() -> None:
    clock = Clock()
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for key in "abc":
        assert store.first_use(key, 75)
    with pytest.raises(ReplayStoreFull) as raised:
        store.first_use("d", 75)
    assert raised.value.reason == "replay_store_full"
    assert isinstance(store.status().problem, ReplayStoreFull)
    assert not store.first_use("a", 75)  # live entries were kept
    clock.advance(76)
    assert store.first_use("d", 75)  # expired entries make room
    assert store.status().problem is None


def test_open_replay_store_specs(tmp_path: Path) -> None:
    assert isinstance(open_replay_store("memory", tmp_path), MemoryReplayStore)
    embedded = open_replay_store("embedded", tmp_path)
    assert isinstance(embedded, EmbeddedReplayStore) and embedded.path == str(tmp_path / "replay")
    embedded.close()
    for gone in ("sqlite:///tmp/x.db", "mongodb://nope"):
        assert store_problem(gone) is not None
        with pytest.raises(ValueError):
            open_replay_store(gone, tmp_path)


# -- embedded: basics -------------------------------------------------------------------------------
def test_embedded_new_then_duplicate_and_seen(store_path: Path) -> None:
    s = open_store(store_path)
    assert s.reset_reason == "missing"
    assert s.first_use("a" * 43, 120) is True
    assert s.first_use("a" * 43, 120) is False
    assert s.seen("a" * 43) and not s.seen("b" * 43)
    assert not s.first_use("a" * 43, 120)
    assert s.first_use("b" * 43, 120) is True
    assert s.entries == 2
    status = s.status()
    assert status.problem is None and status.entries == 2 and status.capacity == 100_000
    assert status.reset == "missing"
    s.close()
    with pytest.raises(ReplayStoreUnavailable):
        s.first_use("c", 10)


def test_embedded_refuses_what_it_cannot_keep(store_path: Path) -> None:
    """A TTL beyond the store's horizon or an oversized key fails closed, with the reason in words."""
    s = open_store(store_path, max_ttl=300)
    for key, ttl in (("k", 0), ("k", -1), ("k", 301), ("", 10), ("x" * 501, 10)):
        with pytest.raises(ReplayStoreUnavailable):
            s.first_use(key, ttl)


def test_embedded_reopen_keeps_keys_and_epoch(store_path: Path) -> None:
    clock = Clock(5000.0)
    s = open_store(store_path, clock=clock)
    assert s.epoch == pytest.approx(5000.0 + IDENTITY_CHECK_INTERVAL)
    assert s.epoch_for("any") == s.epoch
    ks = keys(100)
    assert all(s.first_use(k, 120) for k in ks)
    s.close()
    clock.advance(30)
    again = open_store(store_path, clock=clock)
    assert again.reset_reason is None
    assert again.epoch == s.epoch
    assert again.status().reset == "missing"  # why the store in use was created, as recorded in it
    assert not any(again.first_use(k, 120) for k in ks)


# -- embedded: exactly once --------------------------------------------------------------------------
def _race_worker(store: EmbeddedReplayStore, ks: list[str], seed: int, barrier: object, q: object) -> None:
    try:
        order = list(ks)
        random.Random(seed).shuffle(order)
        barrier.wait()  # type: ignore[attr-defined]
        q.put([k for k in order if store.first_use(k, 120)])  # type: ignore[attr-defined]
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        q.put(repr(exc))  # type: ignore[attr-defined]


def _cap_worker(store: EmbeddedReplayStore, ks: list[str], barrier: object, q: object) -> None:
    try:
        barrier.wait()  # type: ignore[attr-defined]
        ok = full = 0
        for k in ks:
            try:
                ok += store.first_use(k, 120)
            except ReplayStoreFull:
                full += 1
        q.put((ok, full))  # type: ignore[attr-defined]
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        q.put(repr(exc))  # type: ignore[attr-defined]


def run_procs(target: Callable[..., None], args_list: list[tuple[object, ...]]) -> list[object]:
    q = CTX.Queue()
    barrier = CTX.Barrier(len(args_list))
    procs = [CTX.Process(target=target, args=(*a, barrier, q)) for a in args_list]
    for p in procs:
        p.start()
    out = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return out


def test_embedded_exactly_once_across_processes(store_path: Path) -> None:
    """Opened before fork (gunicorn --preload): each child reopens; every key is new exactly once."""
    s = open_store(store_path)
    ks = keys(2000, seed=1)
    results = run_procs(_race_worker, [(s, ks, i) for i in range(2)])
    assert all(isinstance(r, list) for r in results), results
    accepted = [k for r in results for k in r]  # type: ignore[union-attr]
    assert sorted(accepted) == sorted(ks)
    assert run_procs(_race_worker, [(s, ks, 10 + i) for i in range(2)]) == [[], []]
    assert s.entries == len(ks)


def test_embedded_exactly_once_across_threads(store_path: Path) -> None:
    s = open_store(store_path)
    ks = keys(1000, seed=2)
    accepted: list[str] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        order = list(ks)
        random.Random(seed).shuffle(order)
        mine = [k for k in order if s.first_use(k, 120)]
        with lock:
            accepted.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == sorted(ks)


# -- embedded: the cap (issue 10, item 5) -----------------------------------------------------------
def test_embedded_cap_is_exact_on_every_insert_across_processes(store_path: Path) -> None:
    """Issue 10 item 5: the cap was checked every 1,000th insert per worker (4,995 of 5,000 allowed over it).
    Now two processes offering 2 x 1,500 new keys to a 1,000-entry store get exactly 1,000 accepted."""
    s = open_store(store_path, max_entries=1000)
    ks = keys(3000, seed=3)
    results = run_procs(_cap_worker, [(s, ks[:1500]), (s, ks[1500:])])
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(r[0] for r in results) == 1000  # type: ignore[index]
    assert sum(r[1] for r in results) == 2000  # type: ignore[index]
    assert s.entries == 1000
    status = s.status()
    assert isinstance(status.problem, ReplayStoreFull) and "1000 of 1000" in status.problem.description


def test_embedded_full_store_never_evicts_and_still_detects_replays(store_path: Path) -> None:
    clock = Clock(1_000_000.0)
    s = open_store(store_path, max_entries=10, clock=clock)
    ks = keys(11)
    assert all(s.first_use(k, 120) for k in ks[:10])
    with pytest.raises(ReplayStoreFull):
        s.first_use(ks[10], 120)
    assert not any(s.first_use(k, 120) for k in ks[:10])  # a replay is still a replay, not "full"
    clock.advance(60)
    with pytest.raises(ReplayStoreFull):  # nothing has expired yet: nothing may be evicted
        s.first_use(ks[10], 120)


# -- embedded: expiry -------------------------------------------------------------------------------
def test_embedded_expiry_drops_whole_buckets(store_path: Path) -> None:
    clock = Clock(3000.0)  # a multiple of the bucket width, so bucket bounds are easy to see
    s = open_store(store_path, max_entries=5, clock=clock)
    ks = keys(6)
    assert all(s.first_use(k, 120) for k in ks[:5])
    with pytest.raises(ReplayStoreFull):
        s.first_use(ks[5], 120)
    clock.advance(119.9)
    assert not s.first_use(ks[0], 120)  # still inside its TTL
    clock.advance(0.2)  # past the TTL, but its bucket (expiries in [3120, 3150)) is kept: refused, safely
    assert not s.first_use(ks[0], 120)
    clock.now = 3150.0  # the whole bucket expired: dropped in one step, the cap is free again
    assert s.entries == 0
    assert s.first_use(ks[5], 120)
    assert s.entries == 1


def test_embedded_clock_stepping_back_is_safe(store_path: Path) -> None:
    clock = Clock(100_000.0)
    s = open_store(store_path, clock=clock, max_ttl=300)
    a = keys(20, seed=7)
    assert all(s.first_use(k, 120) for k in a)
    clock.advance(-5000)  # NTP step back far beyond the ring: keys go into later buckets, never lost
    b = keys(20, seed=8)
    assert all(s.first_use(k, 120) for k in b)
    assert not any(s.first_use(k, 120) for k in a + b)
    s.ping()


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.floats(0, 50)), min_size=1, max_size=60))
def test_embedded_matches_a_model(tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, float]]) -> None:
    """Property: a key is new the first time; never new again within its TTL; new again once it is older
    than TTL + one bucket (in between either answer is safe: a jti is never legitimately reused)."""
    clock = Clock(9000.0)
    s = open_store(tmp_path_factory.mktemp("model") / "replay", clock=clock, max_ttl=120)
    accepted: dict[int, float] = {}
    try:
        for key, advance in steps:
            clock.advance(advance)
            new = s.first_use(f"key-{key}", 60)
            last = accepted.get(key)
            if last is None or clock.now >= last + 60 + 30:
                assert new, (key, last, clock.now)
            elif clock.now < last + 60:
                assert not new, (key, last, clock.now)
            if new:
                accepted[key] = clock.now
    finally:
        s.close()


# -- embedded: a new epoch whenever its memory may be incomplete (issue 10, item 4) -------------------
def _fill_and_close(path: Path, n: int = 500) -> tuple[float, list[str]]:
    s = open_store(path)
    ks = keys(n, seed=9)
    assert all(s.first_use(k, 120) for k in ks)
    epoch = s.epoch
    s.close()
    return epoch, ks


def _used_bytes(path: Path) -> int:
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return int((env.info()["last_pgno"] + 1) * 4096)
    finally:
        env.close()


def _garbage(f: Path, offset: int, length: int) -> None:
    with open(f, "r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(offset).randbytes(length))


DAMAGE: dict[str, Callable[[Path], object]] = {
    "garbage everywhere": lambda p: _garbage(p / "data.mdb", 0, _used_bytes(p)),
    "garbage over the meta pages": lambda p: _garbage(p / "data.mdb", 0, 8192),
    "garbage over the data pages": lambda p: _garbage(p / "data.mdb", 8192, _used_bytes(p) - 8192),
    "truncated": lambda p: os.truncate(p / "data.mdb", 64 * 1024),
    "data file deleted": lambda p: os.unlink(p / "data.mdb"),
    "directory deleted": lambda p: shutil.rmtree(p),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_embedded_damaged_at_open_gives_a_new_epoch_and_a_warning(
        store_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    old_epoch, ks = _fill_and_close(store_path)
    DAMAGE[damage](store_path)
    time.sleep(0.01)
    caplog.set_level(logging.WARNING, logger="tokenguard.replay")
    s = open_store(store_path)
    assert s.reset_reason is not None
    assert s.epoch > old_epoch  # the verifier refuses every proof issued before it
    assert any("created" in r.getMessage() and s.reset_reason in r.getMessage() for r in caplog.records)
    assert s.entries == 0
    if damage.startswith(("garbage", "truncated")):
        assert list(store_path.parent.glob("replay.damaged-*")), "damaged store kept for inspection"


def test_embedded_written_before_a_reboot_gives_a_new_epoch(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With sync off an OS crash may lose the last writes; every OS crash is followed by a new boot id."""
    old_epoch, ks = _fill_and_close(store_path)
    monkeypatch.setattr(embedded_module, "_boot_id", lambda: b"\1" * 16)
    s = open_store(store_path)
    assert s.reset_reason is not None and "reboot" in s.reset_reason
    assert s.epoch > old_epoch


def test_embedded_layout_change_gives_a_new_epoch(store_path: Path) -> None:
    old_epoch, _ = _fill_and_close(store_path)
    s = open_store(store_path, max_entries=50_000)
    assert s.reset_reason is not None and "layout" in s.reset_reason
    assert s.epoch > old_epoch


RUNNING_DAMAGE = textwrap.dedent("""
    import os, random, sys, time
    from tokenguard.core.errors import ReplayStoreUnavailable
    from tokenguard.core.replay.embedded import EmbeddedReplayStore
    path, kind = sys.argv[1], sys.argv[2]
    s = EmbeddedReplayStore(path, max_entries=100_000, max_ttl=600)
    keys = [str(i) for i in range(2000)]
    assert all(s.first_use(k, 120) for k in keys)
    epoch = s.epoch
    used = (s._env.info()["last_pgno"] + 1) * 4096
    with open(os.path.join(path, "data.mdb"), "r+b") as f:
        if kind == "data pages":
            f.seek(8192); f.write(random.Random(2).randbytes(used - 8192))
        else:
            f.truncate(64 * 1024)
    time.sleep(0.3)
    outcomes = []
    for k in keys[:50]:
        try:
            outcomes.append("dup" if not s.first_use(k, 120) else "NEW")
        except ReplayStoreUnavailable:
            outcomes.append("unavailable")
    print("FIRST", outcomes[0], "NEW" in outcomes, flush=True)
    time.sleep(1.1)  # past the recovery back-off
    for _ in range(5):
        try:
            assert s.first_use("after-recovery", 120)
            break
        except ReplayStoreUnavailable:
            time.sleep(0.3)
    print("RECOVERED", s.reset_reason, s.epoch > epoch, s.entries, flush=True)
""")


@pytest.mark.parametrize("kind", ["data pages", "truncate"])
def test_embedded_damaged_while_running_fails_closed_then_recovers(store_path: Path, kind: str) -> None:
    """In a child: garbage under a live map may crash LMDB (SIGSEGV/SIGBUS), which also acknowledges
    nothing; otherwise it fails closed, then moves to a new store with a newer epoch."""
    store_path.parent.mkdir(parents=True)
    r = subprocess.run([sys.executable, "-c", RUNNING_DAMAGE, str(store_path), kind], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    if r.returncode < 0:
        assert r.returncode in (-signal.SIGSEGV, -signal.SIGBUS), r
        s = open_store(store_path)
        assert s.reset_reason is not None
        return
    assert r.returncode == 0, r.stderr
    first = next(line for line in r.stdout.splitlines() if line.startswith("FIRST")).split()
    assert first[1] == "unavailable", r.stdout  # fail closed on the first call after the damage
    assert first[2] == "False", r.stdout  # and never a replayed key reported as new
    recovered = next(line for line in r.stdout.splitlines() if line.startswith("RECOVERED"))
    assert recovered.endswith("True 1"), recovered  # a new store, newer epoch, holding only the new key
    again = open_store(store_path)  # a restarted worker opens the recovered store
    assert again.reset_reason is None and not again.first_use("after-recovery", 120)


def test_embedded_deleted_while_running_moves_to_a_new_epoch(store_path: Path) -> None:
    s = open_store(store_path)
    old_epoch = s.epoch
    assert s.first_use("k", 120)
    shutil.rmtree(store_path)
    past_identity_check()
    with pytest.raises(ReplayStoreUnavailable):
        s.first_use("k", 120)
    assert s.first_use("k", 120)  # new store: the key is forgotten ...
    assert s.epoch > old_epoch  # ... and the epoch moved, so the verifier refuses proofs older than it
    assert s.reset_reason == "missing"


def test_embedded_status_reports_inconsistency(store_path: Path) -> None:
    s = open_store(store_path)
    s.first_use("k", 120)
    s.ping()
    with s._lock, s._env.begin(write=True) as txn:  # type: ignore[union-attr]
        txn.put(b"~n", (12345).to_bytes(8, "little"))  # the counter no longer matches the buckets
    status = s.status()
    assert status.problem is not None and "damaged" in status.problem.description
    with pytest.raises(ReplayStoreUnavailable):
        s.ping()


KILL_WRITER = textwrap.dedent("""
    import os, sys
    from tokenguard.core.replay.embedded import EmbeddedReplayStore
    s = EmbeddedReplayStore(sys.argv[1], max_entries=1_000_000, max_ttl=600)
    out = os.fdopen(1, "w", buffering=1)
    i = 0
    while True:
        k = f"{sys.argv[2]}-{i}"
        if s.first_use(k, 600):
            out.write(k + "\\n")  # acknowledged only after first_use returned True
        i += 1
""")


def test_embedded_kill_minus_9_loses_no_acknowledged_key(store_path: Path) -> None:
    open_store(store_path, max_entries=1_000_000).close()
    acked: list[str] = []
    rng = random.Random(10)
    for round_ in range(4):
        procs = [subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(store_path), f"r{round_}w{w}"],
                                  stdout=subprocess.PIPE, text=True, cwd=REPO) for w in range(2)]
        first = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]  # both are writing
        time.sleep(rng.random() * 0.3)  # then kill them at a random point mid-stream
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p, line in zip(procs, first, strict=True):
            out, _ = p.communicate()
            assert p.returncode == -signal.SIGKILL
            acked.extend(k for k in [line, *out.splitlines()] if k)
    assert len(acked) > 100
    s = open_store(store_path, max_entries=1_000_000)  # full verification on open
    assert s.reset_reason is None  # the same store, not a recreated one
    assert not any(s.first_use(k, 600) for k in acked)


def test_embedded_store_options_reach_the_store(tmp_path: Path) -> None:
    store = open_replay_store("embedded", tmp_path, options=StoreOptions(max_entries=2, clock=Clock(7000.0)))
    assert store.first_use("a", 60) and store.first_use("b", 60)
    with pytest.raises(ReplayStoreFull):
        store.first_use("c", 60)
    assert store.epoch_for("a") == pytest.approx(7000.0 + IDENTITY_CHECK_INTERVAL)
    store.close()
