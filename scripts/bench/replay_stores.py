#!/usr/bin/env python3
"""Benchmark candidate DPoP ``jti`` replay stores (one host, many worker processes).

Operation under test: ``first_use(key, ttl) -> bool`` = "insert key if absent (or if
the stored entry has expired) with an expiry; return True iff it was new", atomic
across processes; plus a periodic purge of expired keys.

Stores:
  dict            in-process dict (baseline; NOT shared across processes)
  sqlite-*        stdlib sqlite3, WAL, autocommit, one connection per process,
                  upsert ``ON CONFLICT DO UPDATE ... WHERE expired`` + rowcount
  lmdb-*          ``lmdb`` package, one write txn per op, put(overwrite=False),
                  expiry in the value, expired entry overwritten
  redis-tcp/unix  redis-py ``SET key 1 NX EX ttl`` against a private redis-server

Per store it measures, on a store pre-filled with --prefill live keys:
  * single-process latency of --ops inserts of fresh keys (median / p99 / p99.9 µs)
  * 2 processes inserting distinct fresh keys concurrently (latency per op, aggregate ops/s)
  * correctness: both processes insert the SAME --race-keys keys at the same time;
    total number of "new" answers must equal --race-keys (and the duplicate run must be 0)
  * purge of --prefill expired keys (ms)

Usage:  python scripts/bench/replay_stores.py [--ops 20000] [--dir /tmp] [--only sqlite,lmdb]
Needs:  lmdb, redis (python packages) and redis-server on PATH for the redis rows.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

TTL = 300


def gen_keys(n: int, seed: int) -> list[str]:
    import random

    r = random.Random(seed)
    return [base64.urlsafe_b64encode(r.randbytes(32)).rstrip(b"=").decode() for _ in range(n)]


# ---------------------------------------------------------------------------- stores


class DictStore:
    shared = False

    def __init__(self, spec):
        self.d: dict[str, float] = {}

    def first_use(self, key: str, ttl: int, now: float) -> bool:
        exp = self.d.get(key)
        if exp is not None and exp > now:
            return False
        self.d[key] = now + ttl
        return True

    def prefill(self, keys, exp):
        for k in keys:
            self.d[k] = exp

    def purge(self, now):
        dead = [k for k, e in self.d.items() if e <= now]
        for k in dead:
            del self.d[k]

    def close(self):
        pass


class SqliteStore:
    shared = True
    SQL = (
        "INSERT INTO jti(k, exp) VALUES (?, ?) "
        "ON CONFLICT(k) DO UPDATE SET exp = excluded.exp WHERE jti.exp <= ?"
    )

    def __init__(self, spec):
        self.path = spec["path"]
        # isolation_level=None -> autocommit: each statement is its own transaction
        self.c = sqlite3.connect(self.path, isolation_level=None, timeout=5.0, check_same_thread=False)
        self.c.execute("PRAGMA busy_timeout=5000")
        self.c.execute("PRAGMA journal_mode=WAL")
        self.c.execute(f"PRAGMA synchronous={spec['sync']}")
        self.c.execute(
            "CREATE TABLE IF NOT EXISTS jti(k TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID"
        )
        self.c.execute("CREATE INDEX IF NOT EXISTS jti_exp ON jti(exp)")

    def first_use(self, key, ttl, now):
        n = int(now)
        cur = self.c.execute(self.SQL, (key, n + ttl, n))
        return cur.rowcount == 1

    def prefill(self, keys, exp):
        self.c.execute("BEGIN")
        self.c.executemany("INSERT OR REPLACE INTO jti(k, exp) VALUES (?, ?)", [(k, int(exp)) for k in keys])
        self.c.execute("COMMIT")

    def purge(self, now, batch=1000):
        """Delete expired rows, at most `batch` per transaction (short writer-lock holds)."""
        while True:
            cur = self.c.execute(
                "DELETE FROM jti WHERE k IN (SELECT k FROM jti WHERE exp <= ? LIMIT ?)", (int(now), batch)
            )
            if cur.rowcount < batch:
                return

    def close(self):
        self.c.close()


class LmdbStore:
    shared = True
    _pack = struct.Struct("<d")

    def __init__(self, spec):
        import lmdb

        self.lmdb = lmdb
        self.env = lmdb.open(
            spec["path"],
            map_size=spec.get("map_size", 256 << 20),
            subdir=True,
            sync=spec.get("sync", True),
            metasync=spec.get("sync", True),
            writemap=spec.get("writemap", False),
            max_dbs=0,
            lock=True,
        )

    def first_use(self, key, ttl, now):
        k = key.encode()
        v = self._pack.pack(now + ttl)
        with self.env.begin(write=True) as txn:
            if txn.put(k, v, overwrite=False):
                return True
            old = txn.get(k)
            if self._pack.unpack(old)[0] <= now:  # expired entry: reuse it
                txn.put(k, v)
                return True
            return False

    def prefill(self, keys, exp):
        v = self._pack.pack(exp)
        with self.env.begin(write=True) as txn:
            for k in keys:
                txn.put(k.encode(), v)

    def purge(self, now, batch=1000):
        """Delete expired entries, at most `batch` per write txn (keeps the writer lock short
        and needs only a few free pages per txn, so it also works on a full map)."""
        unpack = self._pack.unpack
        start = b""
        while True:
            n = 0
            with self.env.begin(write=True) as txn:
                cur = txn.cursor()
                if not cur.set_range(start):
                    return
                while cur.key() and n < batch:  # delete() moves to the next item
                    if unpack(cur.value())[0] <= now:
                        cur.delete()
                        n += 1
                    elif not cur.next():
                        return
                start = cur.key()
                if not start:
                    return

    def close(self):
        self.env.close()


class RedisStore:
    shared = True
    PREFIX = "jti:"

    def __init__(self, spec):
        import redis

        if "unix" in spec:
            self.r = redis.Redis(unix_socket_path=spec["unix"])
        else:
            self.r = redis.Redis(host="127.0.0.1", port=spec["port"])
        self.r.ping()

    def first_use(self, key, ttl, now):
        return bool(self.r.set(self.PREFIX + key, b"1", nx=True, ex=ttl))

    def prefill(self, keys, exp):
        p = self.r.pipeline(transaction=False)
        for i, k in enumerate(keys):
            p.set(self.PREFIX + k, b"1", ex=TTL)
            if i % 5000 == 4999:
                p.execute()
        p.execute()

    def purge(self, now):
        pass  # redis expires keys itself

    def close(self):
        self.r.close()


class TokenguardEmbedded:
    """The shipped ``embedded`` store (LMDB, bucket ring, exact cap, epoch and identity checks)."""

    shared = True

    def __init__(self, spec):
        from tokenguard.core.replay.embedded import EmbeddedReplayStore

        self.s = EmbeddedReplayStore(spec["path"], max_entries=1_000_000)

    def first_use(self, key, ttl, now):
        return self.s.first_use(key, ttl)

    def prefill(self, keys, exp):
        for k in keys:
            self.s.first_use(k, TTL)

    def purge(self, now):
        pass  # expiry is a bucket drop inside first_use (measured by tests/core/test_replay.py, not here)

    def close(self):
        self.s.close()


class TokenguardRedis(RedisStore):
    """The shipped Redis store: one EVALSHA (SET NX PX + the epoch beside it) per call."""

    PREFIX = "tokenguard:{0}:jti:"

    def __init__(self, spec):
        from tokenguard.core.replay.redis import RedisReplayStore

        self.s = RedisReplayStore(f"redis://127.0.0.1:{spec['port']}/0")
        self.r = self.s._client

    def first_use(self, key, ttl, now):
        return self.s.first_use(key, ttl)


KINDS = {"dict": DictStore, "sqlite": SqliteStore, "lmdb": LmdbStore, "redis": RedisStore,
         "tokenguard-embedded": TokenguardEmbedded, "tokenguard-redis": TokenguardRedis}


# ---------------------------------------------------------------------------- workers


def _worker(kind, spec, keys, barrier, q):
    try:
        st = KINDS[kind](spec)
        lat = []
        new = 0
        pc = time.perf_counter_ns
        barrier.wait()
        t0 = time.perf_counter()
        for k in keys:
            now = time.time()
            a = pc()
            if st.first_use(k, TTL, now):
                new += 1
            lat.append(pc() - a)
        q.put((lat, new, time.perf_counter() - t0))
        st.close()
    except Exception as e:  # report instead of hanging the parent
        barrier.abort()
        q.put(e)


def run_procs(kind, spec, key_lists):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(key_lists))
    q = ctx.Queue()
    ps = [ctx.Process(target=_worker, args=(kind, spec, kl, barrier, q)) for kl in key_lists]
    for p in ps:
        p.start()
    res = [q.get(timeout=600) for _ in ps]
    for p in ps:
        p.join()
    for r in res:
        if isinstance(r, Exception):
            raise r
    lat = [x for r in res for x in r[0]]
    new = sum(r[1] for r in res)
    wall = max(r[2] for r in res)
    return lat, new, wall


def pct(sorted_ns, p):
    i = min(len(sorted_ns) - 1, int(round(p / 100 * (len(sorted_ns) - 1))))
    return sorted_ns[i] / 1000.0


# ---------------------------------------------------------------------------- redis server


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_redis(tmp):
    exe = shutil.which("redis-server")
    if not exe:
        return None
    port = free_port()
    sock = os.path.join(tmp, "redis.sock")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", sock, "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", tmp, "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if os.path.exists(sock):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proc, port, sock
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    return None


# ---------------------------------------------------------------------------- main


def lmdb_map_full_demo(tmp):
    """Show what LMDB does when the map is full (and that delete frees pages for reuse)."""
    import lmdb

    path = os.path.join(tmp, "lmdb-full")
    st = LmdbStore({"path": path, "map_size": 1 << 20, "sync": False})  # 1 MiB map
    n = 0
    err = None
    now = time.time()
    keys = gen_keys(50000, 99)
    try:
        for k in keys:
            st.first_use(k, TTL, now)
            n += 1
    except lmdb.MapFullError as e:
        err = type(e).__name__
    # after expiry: deleting everything in ONE write txn fails too (copy-on-write needs free pages)
    big = "ok"
    try:
        st.purge(now + TTL + 1, batch=10**9)
    except lmdb.MapFullError:
        big = "MapFullError"
    small = "ok"
    try:
        st.purge(now + TTL + 1, batch=1)  # even one delete per txn?
    except lmdb.MapFullError:
        small = "MapFullError"
        st.env.set_mapsize(2 << 20)  # the only way out: grow the map (no txn may be open)
        st.purge(now + TTL + 1, batch=100)
        small += " -> ok after env.set_mapsize(2 MiB)"
    with st.env.begin() as txn:
        left = txn.stat()["entries"]
    ok_after = True
    try:
        for k in gen_keys(n // 2, 98):
            st.first_use(k, TTL, now + TTL + 1)
    except lmdb.MapFullError:
        ok_after = False
    st.close()
    return n, err, big, small, left, ok_after


def sqlite_full_demo(tmp):
    """Bounded size in SQLite: PRAGMA max_page_count makes inserts fail with SQLITE_FULL;
    check whether purge (DELETE) still works on a full database and inserts recover."""
    path = os.path.join(tmp, "sqlite-full.db")
    st = SqliteStore({"path": path, "sync": "NORMAL"})
    st.c.execute("PRAGMA max_page_count=256")  # 256 x 4 KiB pages = 1 MiB
    now = time.time()
    n, err = 0, None
    try:
        for k in gen_keys(50000, 99):
            st.first_use(k, TTL, now)
            n += 1
    except sqlite3.OperationalError as e:
        err = str(e)
    purge = "ok"
    try:
        st.purge(now + TTL + 1)
    except sqlite3.OperationalError as e:
        purge = str(e)
    ok_after = True
    try:
        for k in gen_keys(n // 2, 98):
            st.first_use(k, TTL, now + TTL + 1)
    except sqlite3.OperationalError:
        ok_after = False
    st.close()
    return n, err, purge, ok_after


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=20000, help="single-process ops per store")
    ap.add_argument("--prefill", type=int, default=100000, help="live keys loaded before measuring")
    ap.add_argument("--race-keys", type=int, default=10000)
    ap.add_argument("--dir", default=None, help="directory for the sqlite/lmdb files (default: a temp dir under /tmp)")
    ap.add_argument("--shm", action="store_true", help="also run sqlite/lmdb on /dev/shm (tmpfs)")
    ap.add_argument("--only", default="", help="comma list of prefixes, e.g. sqlite,lmdb")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="replaybench-", dir=args.dir)
    dirs = [("disk", base)]
    shm = None
    if args.shm and os.path.isdir("/dev/shm"):
        shm = tempfile.mkdtemp(prefix="replaybench-", dir="/dev/shm")
        dirs.append(("shm", shm))

    configs = [("dict", "dict", {})]
    for label, d in dirs:
        for sync in ("FULL", "NORMAL", "OFF"):
            configs.append((f"sqlite-wal-{sync.lower()}@{label}", "sqlite",
                            {"path": os.path.join(d, f"s-{sync}.db"), "sync": sync}))
        configs.append((f"lmdb-sync@{label}", "lmdb", {"path": os.path.join(d, "l-sync"), "sync": True}))
        configs.append((f"lmdb-nosync@{label}", "lmdb", {"path": os.path.join(d, "l-nosync"), "sync": False}))
        configs.append((f"tokenguard-embedded@{label}", "tokenguard-embedded", {"path": os.path.join(d, "tg")}))
    rs = start_redis(base)
    if rs:
        _, port, sock = rs
        configs.append(("redis-tcp", "redis", {"port": port}))
        configs.append(("redis-unix", "redis", {"unix": sock}))
        configs.append(("tokenguard-redis", "tokenguard-redis", {"port": port}))
    else:
        print("# redis-server not found: skipping redis rows", file=sys.stderr)
    if args.only:
        pre = tuple(args.only.split(","))
        configs = [c for c in configs if c[0].startswith(pre)]

    print(f"# python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, ops={args.ops}, "
          f"prefill={args.prefill}, race_keys={args.race_keys}, disk dir={base}, cpus={os.cpu_count()}")
    hdr = (f"{'store':26} {'1p p50':>7} {'1p p99':>8} {'1p p99.9':>9} {'1p ops/s':>9} | {'2p p50':>7} "
           f"{'2p p99':>8} {'2p ops/s':>9} | {'race new':>9} {'dup new':>7} | {'purge ms':>8}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    try:
        for name, kind, spec in configs:
            now = time.time()
            st = KINDS[kind](spec)
            if kind in ("redis", "tokenguard-redis"):
                st.r.flushall()
            st.prefill(gen_keys(args.prefill, 1), now + TTL)
            # --- single process (in this process: fork not needed)
            keys = gen_keys(args.ops, 2)
            lat = []
            pc = time.perf_counter_ns
            t0 = time.perf_counter()
            new = 0
            for k in keys:
                n = time.time()
                a = pc()
                new += st.first_use(k, TTL, n)
                lat.append(pc() - a)
            wall1 = time.perf_counter() - t0
            assert new == args.ops, (name, new)
            # the same keys again must all be rejected
            assert not any(st.first_use(k, TTL, time.time()) for k in keys[:1000]), name
            lat.sort()
            r = {"store": name, "p50": pct(lat, 50), "p99": pct(lat, 99), "p999": pct(lat, 99.9),
                 "ops1": args.ops / wall1}
            # --- 2 processes, distinct keys. The parent's handle is closed first: an LMDB env
            # (and a sqlite connection) must never be inherited across fork(); open after fork.
            st.close()
            if st.shared:
                half = args.ops // 2
                k2 = gen_keys(args.ops, 3)
                lat2, new2, wall2 = run_procs(kind, spec, [k2[:half], k2[half:]])
                lat2.sort()
                r.update(p50_2=pct(lat2, 50), p99_2=pct(lat2, 99), ops2=len(lat2) / wall2)
                # --- 2 processes, same keys (race)
                kr = gen_keys(args.race_keys, 4)
                _, newr, _ = run_procs(kind, spec, [kr, kr])  # same keys, same order: max contention
                _, newd, _ = run_procs(kind, spec, [kr, kr])
                r.update(race=newr, dup=newd)
            else:
                r.update(p50_2=float("nan"), p99_2=float("nan"), ops2=float("nan"), race="n/a", dup="n/a")
            # --- purge: everything inserted so far is expired one TTL later
            st = KINDS[kind](spec) if st.shared else st
            if kind in ("redis", "tokenguard-redis", "tokenguard-embedded"):
                r["purge"] = float("nan")
            else:
                # refill with prefill keys that expire "now" and purge them
                st.prefill(gen_keys(args.prefill, 5), time.time() - 1)
                t = time.perf_counter()
                st.purge(time.time())
                r["purge"] = (time.perf_counter() - t) * 1000
            st.close()
            rows.append(r)
            print(f"{name:26} {r['p50']:7.1f} {r['p99']:8.1f} {r['p999']:9.1f} {r['ops1']:9.0f} | {r['p50_2']:7.1f} "
                  f"{r['p99_2']:8.1f} {r['ops2']:9.0f} | {str(r['race']):>9} {str(r['dup']):>7} | {r['purge']:8.1f}",
                  flush=True)
        if not args.only or "lmdb" in args.only or "sqlite" in args.only:
            n, err, big, small, left, ok_after = lmdb_map_full_demo(base)
            n2, err2, purge2, ok2 = sqlite_full_demo(base)
            after = "work again" if ok_after else "STILL FAIL"
            print(f"\n# lmdb map_size=1MiB: {n} inserts before {err}; purging all expired keys in one txn: {big}; "
                  f"one key per txn: {small} ({left} left); inserts afterwards {after}")
            print(f"# sqlite max_page_count=256 (1 MiB): {n2} inserts before OperationalError({err2!r}); "
                  f"purge of expired keys: {purge2}; inserts afterwards {'work again' if ok2 else 'STILL FAIL'}")
    finally:
        if rs:
            rs[0].terminate()
            rs[0].wait()
        shutil.rmtree(base, ignore_errors=True)
        if shm:
            shutil.rmtree(shm, ignore_errors=True)
    print("\n# latencies in µs per first_use() call; 1p = one process, 2p = two processes concurrently "
          "on distinct keys (ops/s aggregate);\n# race new = total 'new' answers when 2 processes insert the same "
          f"{args.race_keys} keys simultaneously (must be {args.race_keys}); dup new = the same again (must be 0);"
          f"\n# purge = deleting {args.prefill} expired keys (redis expires on its own).")


if __name__ == "__main__":
    main()
