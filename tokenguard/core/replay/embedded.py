"""``embedded`` (default): DPoP ``jti`` values in LMDB under the state directory, shared by every worker
process of the host (RFC 9449 §11.1), with no server to run.

Why LMDB (``lmdb`` package) and not SQLite: measured 6-11 µs per ``first_use`` against 16-35 µs for
SQLite's WAL commit, an exact cap for 0.7 µs, and expiry in O(pages) (``docs/measurements.md``).
One write transaction per ``first_use`` (``writemap=True, sync=False``); LMDB's process-shared robust
writer mutex makes "look up, then insert" atomic across processes and threads.

Layout (``path`` is a directory; LMDB keeps ``data.mdb`` and ``lock.mdb`` in it):

* ``~hdr`` (main DB): immutable header -- magic, format, epoch, boot id, store id, layout; CRC32.
  ``~why``: why this store was created (for ``/readyz``).
* ``~ring`` (main DB): the ascending numbers of the non-empty time buckets; CRC32. It changes once per
  bucket, so each call only compares it with the copy it parsed last time.
* ``~n`` (main DB): number of keys held, checked against the cap and bumped in every inserting
  transaction (the main DB's leaf page is rewritten by every commit anyway).
* ``b000`` … (named DBs): a ring of K time buckets. A key lives in the bucket of its expiry time,
  ``floor((now + ttl) / bucket_seconds)``; a bucket is emptied with one ``drop()`` as soon as its last
  second has passed, so expiry never walks keys.

Guarantees: exactly once (look-up in every live bucket and insert in one write transaction); the cap
(``~n`` compared in the same transaction as every insert; at the cap :class:`ReplayStoreFull`, never an
eviction); the epoch (written into ``~hdr`` at creation: a store that is missing, damaged, truncated,
written under another boot -- an OS crash may have lost unsynced writes -- or replaced underneath a
running process is never repaired in place but moved aside, and a new store with a new epoch is
created); kill -9 (copy-on-write, two meta pages: a killed writer leaves the last commit intact, and a
key is reported new only after its commit, i.e. once it is in the page cache, which outlives the process).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import secrets
import shutil
import struct
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from tokenguard.core.errors import ReplayStoreFull, ReplayStoreUnavailable
from tokenguard.core.replay import PingByStatus, ReplayStore, StoreOptions, StoreStatus, register_store

log = logging.getLogger("tokenguard.replay")

__all__ = ["IDENTITY_CHECK_INTERVAL", "EmbeddedReplayStore"]

class _Damaged(Exception):
    """The on-disk store cannot be trusted and must be replaced (with a new epoch)."""


_MAGIC = b"TGRS"
_FORMAT = 1
# magic, format, epoch, bucket_seconds, ring size, map size, boot id, store id
_HDR = struct.Struct("<4sHddIQ16s16s")
_CRC = struct.Struct("<I")
_HDR_KEY, _RING_KEY, _N_KEY, _WHY_KEY = b"~hdr", b"~ring", b"~n", b"~why"
_MAX_KEY_BYTES = 500  # LMDB's default limit is 511

# How stale a process's proof "the store at ``path`` is still the file I write to" may be when it reports
# a key as new. A process still writing to a store that was just replaced acknowledges keys at most this
# long after the replacement was created, so ``epoch`` is reported this much after the creation time.
IDENTITY_CHECK_INTERVAL = 0.25
# A process that found its store damaged fails closed for this long before it replaces the store.
_RECOVERY_BACKOFF = 1.0
_PAGE = 4096
_LMDB_META = struct.Struct("<IIQQ96xQQ")  # magic, version, address, map size, (2 DB records), last page, txn id
# Errors meaning the file's contents are inconsistent (as opposed to e.g. a full disk).
_CORRUPTION: tuple[type[BaseException], ...] = (
    _Damaged, lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.VersionMismatchError,
    lmdb.PanicError, lmdb.BadValsizeError, lmdb.IncompatibleError, lmdb.BadDbiError, lmdb.NotFoundError,
    lmdb.PageFullError, lmdb.BadTxnError)
# Errors that mean the file itself is bad when they happen while opening it.
_LMDB_DAMAGE: tuple[type[BaseException], ...] = (
    lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.VersionMismatchError,
    lmdb.IncompatibleError, lmdb.BadValsizeError, lmdb.NotFoundError, lmdb.PanicError)
# Measured ~75 B per 43-byte key (B-tree fill ~70%); ×2 leaves room for copy-on-write and for the bucket
# that expired but is not dropped yet.
_BYTES_PER_ENTRY = 192

_INSTANCES: weakref.WeakSet[EmbeddedReplayStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Flag every store in a forked child (cheaper than getpid() per call); a held lock would stay held."""
    for store in list(_INSTANCES):
        store._lock = threading.Lock()
        store._forked = True
        # Close the inherited handle now: py-lmdb refuses to open the same files again in this process while
        # it is open (another store instance for the same path would fail), and it must never be used here.
        store._close_env()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _boot_id() -> bytes:
    """The kernel's per-boot UUID: a store last written under another boot may have lost unsynced writes."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return uuid.UUID(f.read().strip()).bytes
    except (OSError, ValueError):
        return b"\0" * 16  # not Linux: a reboot is then only caught through damage or a missing file


def _pack_ring(ring: list[int]) -> bytes:
    body = struct.pack(f"<{len(ring)}q", *ring)
    return body + _CRC.pack(zlib.crc32(body))


def _unpack_ring(raw: bytes | memoryview | None) -> list[int]:
    if raw is None or len(raw) % 8 != 4 or zlib.crc32(raw[:-4]) != _CRC.unpack_from(raw, len(raw) - 4)[0]:
        raise _Damaged("ring record missing or corrupt")
    ring = list(struct.unpack(f"<{len(raw) // 8}q", raw[:-4]))
    if ring != sorted(set(ring)):
        raise _Damaged("ring record inconsistent")
    return ring


class EmbeddedReplayStore(PingByStatus):
    """Host-wide ``jti`` store: ``first_use(key, ttl)`` is True exactly once per key while it is retained.

    Retention is at least ``ttl`` and less than ``ttl + bucket_seconds``: a key presented again just after
    its TTL may still be refused, which is safe (a ``jti`` is never legitimately reused). Size the cap as
    ``peak new keys/s × (ttl + bucket_seconds)``. Every process must open it with the same
    ``max_entries``, ``bucket_seconds`` and ``max_ttl``: another layout is a new store (a new epoch).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_entries: int,
                 clock: Callable[[], float] = time.time, bucket_seconds: float = 30.0,
                 max_ttl: float = 3600.0, verify_on_open: bool = True) -> None:
        if max_entries <= 0 or bucket_seconds <= 0 or max_ttl <= 0:
            raise ValueError("max_entries, bucket_seconds and max_ttl must be positive")
        self.path = os.path.abspath(os.fspath(path))
        self._data = os.path.join(self.path, "data.mdb")
        self._max = int(max_entries)
        self._clock = clock
        self._w = float(bucket_seconds)
        self._max_ttl = float(max_ttl)
        # Ring size: a bucket that can still hold live keys never shares a DB with the bucket being written.
        self._k = math.ceil(self._max_ttl / self._w) + 2
        self._map_size = max(8 << 20, -(-self._max * _BYTES_PER_ENTRY // 4096) * 4096 + (4 << 20))
        self._verify_on_open = verify_on_open
        self._lock = threading.Lock()
        self._forked = False
        self._env: lmdb.Environment | None = None
        self._dbs: list[Any] = []
        self._hdr_raw = b""
        self._ring_raw: bytes | None = None
        self._ring: list[int] = []
        self._epoch = 0.0
        self._ident: tuple[int, int] | None = None
        self._verified_at = -math.inf
        self._broken: str | None = None  # why this process stopped trusting the store it has open
        self._retry_at = 0.0
        self._closed = False
        #: Why the current store was (re)created ("missing", "damaged while running", …), None if reused.
        self.reset_reason: str | None = None
        self._why = ""  # why the store in use was created, as recorded in it (any process may have done it)
        _INSTANCES.add(self)
        with self._lock:
            self._open()

    # ------------------------------------------------------------------------------------------ public API

    @property
    def epoch(self) -> float:
        """Time from which this store remembers every key it accepted (creation time + identity-check lag).

        Read without a check: after ``first_use`` it is the epoch of the store that call wrote to, or of a
        newer one another thread reopened since (later, so stricter)."""
        return self._epoch + IDENTITY_CHECK_INTERVAL

    def epoch_for(self, key: str) -> float:
        return self.epoch

    def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was not already recorded.

        Raises :class:`ReplayStoreFull` at the cap and :class:`ReplayStoreUnavailable` on I/O errors, on
        damage, or when the store was replaced (its epoch moved).
        """
        k = key.encode()
        if not (0 < ttl <= self._max_ttl and 0 < len(k) <= _MAX_KEY_BYTES):
            raise ReplayStoreUnavailable(f"embedded replay store keeps keys of 1..{_MAX_KEY_BYTES} bytes for "
                                         f"at most {self._max_ttl:.0f} s; asked for {ttl:.0f} s")
        with self._lock:
            if self._env is None or self._broken is not None or self._forked \
                    or time.monotonic() - self._verified_at > IDENTITY_CHECK_INTERVAL:
                self._ready()
            now = self._clock()
            w = self._w
            nb = math.floor(now / w)
            tb = math.floor((now + ttl) / w)
            full = -1
            try:
                with self._env.begin(write=True) as txn:  # type: ignore[union-attr]
                    raw = txn.get(_RING_KEY)
                    if raw != self._ring_raw:
                        self._ring, self._ring_raw = _unpack_ring(raw), raw
                    ring = self._ring
                    if ring and ring[0] < nb:
                        ring = self._drop_expired(txn, nb)
                    dbs, kk = self._dbs, self._k
                    get = txn.get
                    for b in ring:
                        if get(k, None, dbs[b % kk]) is not None:
                            return False
                    n_raw = get(_N_KEY)
                    if n_raw is None or len(n_raw) != 8:
                        raise _Damaged("counter record missing or corrupt")
                    n = int.from_bytes(n_raw, "little")
                    if n >= self._max:
                        full = n  # refused after the commit, so that buckets dropped above stay dropped
                    else:
                        slot = tb % kk
                        for b in ring:
                            if b % kk == slot:  # tb itself, or a later bucket if the clock stepped back: safe
                                break
                        else:
                            ring = sorted([*ring, tb])
                            raw = _pack_ring(ring)
                            txn.put(_RING_KEY, raw)
                            self._ring, self._ring_raw = ring, raw
                        if not txn.put(k, b"", True, False, False, dbs[slot]):
                            raise _Damaged("key present in a bucket the ring does not list")
                        txn.put(_N_KEY, (n + 1).to_bytes(8, "little"))
            except lmdb.MapFullError as exc:  # the map is sized for the cap: reaching it means the cap is off
                log.error("embedded replay store at %s: LMDB map full below the entry cap", self.path)
                raise ReplayStoreFull("embedded replay store: map full") from exc
            except _CORRUPTION as exc:
                self._mark_broken(f"{type(exc).__name__}: {exc}")
                raise ReplayStoreUnavailable(f"embedded replay store damaged: {type(exc).__name__}") from exc
            except lmdb.Error as exc:
                raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}: {exc}") from exc
            if full >= 0:
                raise ReplayStoreFull(self._full_text(full))
            # Acknowledge only if the file was still the one at ``path`` at most IDENTITY_CHECK_INTERVAL ago:
            # then this commit precedes any replacement's epoch (see ``epoch``).
            if time.monotonic() - self._verified_at > IDENTITY_CHECK_INTERVAL:
                self._check_identity()
            return True

    def _full_text(self, held: int) -> str:
        return f"embedded replay store holds {held} of {self._max} entries (replay.max_entries)"

    def seen(self, key: str) -> bool:
        """Whether ``key`` is held now (expired buckets count as empty); records nothing."""
        k = key.encode()
        if not 0 < len(k) <= _MAX_KEY_BYTES:
            return False
        with self._lock:
            self._ready()
            nb = math.floor(self._clock() / self._w)

            def look(txn: lmdb.Transaction) -> bool:
                ring = _unpack_ring(txn.get(_RING_KEY))
                return any(txn.get(k, None, self._dbs[b % self._k]) is not None for b in ring if b >= nb)

            return bool(self._txn(look))

    def status(self) -> StoreStatus:
        """Open, whole and still at ``path`` (full check now), and how full; never raises."""
        name = f"embedded {self.path}"
        try:
            with self._lock:
                self._verified_at = -math.inf
                self._ready()
            held = self.entries
        except ReplayStoreUnavailable as exc:
            return StoreStatus(name, problem=exc, epoch=self.epoch, reset=self._why or None, capacity=self._max)
        problem = ReplayStoreFull(self._full_text(held)) if held >= self._max else None
        return StoreStatus(name, problem=problem, epoch=self.epoch, reset=self._why or None, entries=held,
                           capacity=self._max)

    @property
    def entries(self) -> int:
        """Keys held now, as the cap counts them (live keys plus the just-expired ones of the oldest bucket).

        Drops expired buckets first, like every insert does."""
        with self._lock:
            self._ready()
            nb = math.floor(self._clock() / self._w)
            try:
                with self._env.begin(write=True) as txn:  # type: ignore[union-attr]
                    raw = txn.get(_RING_KEY)
                    if raw != self._ring_raw:
                        self._ring, self._ring_raw = _unpack_ring(raw), raw
                    if self._ring and self._ring[0] < nb:
                        self._drop_expired(txn, nb)  # committed: what the next insert's cap check would see
                    return self._counter(txn)
            except _CORRUPTION as exc:
                self._mark_broken(f"{type(exc).__name__}: {exc}")
                raise ReplayStoreUnavailable(f"embedded replay store damaged: {type(exc).__name__}") from exc
            except lmdb.Error as exc:
                raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close this process's handle (other processes keep using the store)."""
        with self._lock:
            self._closed = True
            self._close_env()

    def __enter__(self) -> EmbeddedReplayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ per call

    def _ready(self) -> None:
        """Make the handle usable in this process: after fork, after damage, and when its check is due."""
        if self._closed:
            raise ReplayStoreUnavailable("embedded replay store is closed")
        if self._forked:
            # A forked child inherits the parent's mapping but must not use it (LMDB's locks belong to a
            # process); py-lmdb also refuses to open the same files again until the inherited handle is closed.
            self._forked = False
            self._close_env()
        try:
            if self._broken is not None:
                if time.monotonic() < self._retry_at:
                    raise ReplayStoreUnavailable(f"embedded replay store damaged: {self._broken}")
                self._recover()
            if self._env is None:
                self._open()
            if time.monotonic() - self._verified_at > IDENTITY_CHECK_INTERVAL:
                self._check_identity()
        except OSError as exc:  # disk full, permissions, … while (re)opening or checking: fail closed
            raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}: {exc}") from exc

    def _txn(self, fn: Callable[[lmdb.Transaction], Any]) -> Any:
        """Run ``fn`` in a write transaction that is then aborted (write, so no reader slot can go stale)."""
        try:
            with self._env.begin(write=True) as txn:  # type: ignore[union-attr]
                try:
                    return fn(txn)
                finally:
                    txn.abort()
        except _CORRUPTION as exc:
            self._mark_broken(f"{type(exc).__name__}: {exc}")
            raise ReplayStoreUnavailable(f"embedded replay store damaged: {type(exc).__name__}") from exc
        except lmdb.Error as exc:
            raise ReplayStoreUnavailable(f"embedded replay store: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _counter(txn: lmdb.Transaction) -> int:
        n_raw = txn.get(_N_KEY)
        if n_raw is None or len(n_raw) != 8:
            raise _Damaged("counter record missing or corrupt")
        return int.from_bytes(n_raw, "little")

    def _drop_expired(self, txn: lmdb.Transaction, nb: int) -> list[int]:
        """Empty every bucket whose last second has passed: one O(pages) drop per bucket, never per key."""
        ring = list(self._ring)
        n = self._counter(txn)
        while ring and ring[0] < nb:
            db = self._dbs[ring.pop(0) % self._k]
            n -= txn.stat(db)["entries"]
            txn.drop(db, delete=False)
        if n < 0:
            raise _Damaged("counter below the keys held")
        raw = _pack_ring(ring)
        txn.put(_RING_KEY, raw)
        txn.put(_N_KEY, n.to_bytes(8, "little"))
        self._ring, self._ring_raw = ring, raw
        return ring

    def _check_identity(self) -> None:
        """Is ``path`` still the file this process writes to, whole and consistent? If not, stop using it."""
        try:
            st = os.stat(self._data)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._ident:
            # Deleted or replaced (another process recreated it, or someone removed it): this process's
            # memory is no longer the host's. Reopen on the next call; the new store has a newer epoch.
            self._close_env()
            log.warning("embedded replay store at %s was replaced or removed; reopening", self.path)
            raise ReplayStoreUnavailable("embedded replay store was replaced; its epoch changed")
        if st.st_size < self._map_size:
            # Truncated: touching a page past the new end would raise SIGBUS. Never touch the map again.
            self._mark_broken(f"data file truncated to {st.st_size} bytes")
            raise ReplayStoreUnavailable("embedded replay store damaged: truncated")
        try:
            self._check_meta_pages(st.st_size)
        except _Damaged as exc:
            # Garbage in LMDB's meta pages makes it follow page numbers out of the map (SIGSEGV): stop now.
            self._mark_broken(str(exc))
            raise ReplayStoreUnavailable("embedded replay store damaged: meta pages") from exc
        self._txn(self._check_light)
        self._verified_at = time.monotonic()

    def _check_meta_pages(self, size: int) -> None:
        """LMDB trusts its two meta pages blindly; check them with pread() before it follows them."""
        fd = os.open(self._data, os.O_RDONLY)
        try:
            raw = os.pread(fd, 2 * _PAGE, 0)
        finally:
            os.close(fd)
        if len(raw) < 2 * _PAGE:
            raise _Damaged("meta pages missing")
        for page in (0, 1):
            magic, version, _addr, _map, last_pg, _txnid = _LMDB_META.unpack_from(raw, page * _PAGE + 16)
            if magic != 0xBEEFC0DE or version != 1 or (last_pg + 1) * _PAGE > min(size, self._map_size):
                raise _Damaged(f"LMDB meta page {page} is corrupt")

    def _check_light(self, txn: lmdb.Transaction) -> None:
        """Cheap consistency check (K stat calls), run with each identity check (every 0.25 s per process)."""
        if txn.get(_HDR_KEY) != self._hdr_raw:
            raise _Damaged("header record changed")
        self._check_counts(txn, self._dbs, _unpack_ring(txn.get(_RING_KEY)), full=False)

    def _check_counts(self, txn: lmdb.Transaction, dbs: list[Any], ring: list[int], full: bool) -> None:
        """Buckets outside the ring are empty, and the counter equals the keys held (walked with ``full``)."""
        live = {b % self._k for b in ring}
        if len(live) != len(ring):
            raise _Damaged("two ring buckets share a DB")
        total = 0
        for i, db in enumerate(dbs):
            n = txn.stat(db)["entries"]
            if (n > 0) != (i in live):
                raise _Damaged(f"bucket DB {i} holds {n} keys but is {'' if i in live else 'not '}in the ring")
            if full and n:
                seen = 0
                for key in txn.cursor(db).iternext(values=False):
                    if not 0 < len(key) <= _MAX_KEY_BYTES:
                        raise _Damaged("bad key length")
                    seen += 1
                if seen != n:
                    raise _Damaged(f"bucket DB {i}: walked {seen} keys, its header says {n}")
            total += n
        if total != self._counter(txn):
            raise _Damaged(f"counter says {self._counter(txn)}, buckets hold {total}")

    def _mark_broken(self, why: str) -> None:
        if self._broken is None:
            log.error("embedded replay store at %s is damaged (%s); failing closed", self.path, why)
        self._broken = why
        self._retry_at = time.monotonic() + _RECOVERY_BACKOFF

    def _recover(self) -> None:
        """Replace the damaged store by a new one (new epoch), unless another process already did."""
        broken_ident = self._ident
        self._close_env()
        self._broken = None
        self._open(quarantine_if=broken_ident)

    # ------------------------------------------------------------------------------------------ open / create

    def _close_env(self) -> None:
        env, self._env, self._dbs, self._ident = self._env, None, [], None
        self._ring_raw, self._ring = None, []
        self._verified_at = -math.inf
        if env is not None:
            with contextlib.suppress(lmdb.Error):
                env.close()

    def _open(self, quarantine_if: tuple[int, int] | None = None) -> None:
        """Open the store at ``path`` or create it, under an exclusive flock so that one process decides."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path + ".open-lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            parent, name = os.path.split(self.path)
            for stale in os.listdir(parent):  # left by a process killed while creating (we hold the lock)
                if stale.startswith(name + ".new-"):
                    shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
            reason: str | None = None
            if quarantine_if is not None:
                with contextlib.suppress(OSError):
                    st = os.stat(self._data)
                    if (st.st_dev, st.st_ino) == quarantine_if:
                        reason = "damaged while running"
            if reason is None:
                if not os.path.exists(self._data):
                    reason = "missing"  # first start; or deleted (state dir wiped, tmpfs after a reboot)
                else:
                    try:
                        self._open_existing()
                        self.reset_reason = None
                        return
                    except _Damaged as exc:
                        reason = str(exc)
            if os.path.lexists(self.path):
                self._quarantine(reason)
            self._create(reason)
            self.reset_reason = reason
            self._open_existing(verify=False)
            log.warning("embedded replay store at %s created (%s); epoch %.3f: proofs issued before it are "
                        "refused", self.path, reason, self._epoch)
        finally:
            os.close(fd)  # releases the flock

    def _env_open(self, path: str, sync: bool = False) -> lmdb.Environment:
        # writemap: a commit writes into the shared map instead of pwrite()ing each page (3x faster here);
        # sync/metasync off: no fsync per commit (an OS crash is caught through the boot id instead);
        # only write transactions are used, so no reader slot can go stale when a worker is killed.
        return lmdb.open(path, map_size=self._map_size, subdir=True, max_dbs=self._k + 1, writemap=True,
                         sync=sync, metasync=sync, readahead=False, lock=True, max_readers=16, meminit=False)

    def _open_existing(self, verify: bool | None = None) -> None:
        try:
            st_before = os.stat(self._data)
        except FileNotFoundError as exc:
            raise _Damaged("missing") from exc
        if st_before.st_size < self._map_size:
            # Truncated, or made with a smaller cap. Either way LMDB would fault past the end of the file.
            raise _Damaged(f"data file is {st_before.st_size} bytes, expected {self._map_size}")
        self._check_meta_pages(st_before.st_size)
        env = None
        try:
            env = self._env_open(self.path)
            info = env.info()
            if (info["last_pgno"] + 1) * 4096 > st_before.st_size or info["map_size"] != self._map_size:
                raise _Damaged("LMDB meta page points past the end of the file")
            with env.begin(write=True) as txn:
                hdr_raw = txn.get(_HDR_KEY)
                if hdr_raw is None or len(hdr_raw) != _HDR.size + _CRC.size \
                        or zlib.crc32(hdr_raw[:-4]) != _CRC.unpack_from(hdr_raw, _HDR.size)[0]:
                    raise _Damaged("header record missing or corrupt")
                magic, fmt, epoch, w, k, map_size, boot, _store_id = _HDR.unpack_from(hdr_raw)
                if magic != _MAGIC or fmt != _FORMAT:
                    raise _Damaged("not a tokenguard replay store")
                if (w, k, map_size) != (self._w, self._k, self._map_size):
                    raise _Damaged("layout changed (bucket_seconds, max_ttl or max_entries)")
                if boot != _boot_id():
                    raise _Damaged("last written before a reboot (unsynced writes may be lost)")
                dbs = [env.open_db(b"b%03d" % i, txn=txn, create=False) for i in range(k)]
                why = bytes(txn.get(_WHY_KEY) or b"").decode("utf-8", "replace")
                self._check_counts(txn, dbs, _unpack_ring(txn.get(_RING_KEY)),
                                   full=self._verify_on_open if verify is None else verify)
                # committed, not aborted: LMDB closes DB handles opened in an aborted transaction
        except _Damaged:
            if env is not None:
                env.close()
            raise
        except _LMDB_DAMAGE as exc:
            if env is not None:
                env.close()
            raise _Damaged(f"LMDB: {type(exc).__name__}: {exc}") from exc
        except lmdb.Error as exc:  # e.g. already open in this process, no memory, locks: not the file's fault
            if env is not None:
                env.close()
            raise ReplayStoreUnavailable(f"embedded replay store: cannot open: {exc}") from exc
        st_after = os.stat(self._data)
        if (st_after.st_dev, st_after.st_ino) != (st_before.st_dev, st_before.st_ino):
            env.close()
            raise ReplayStoreUnavailable("embedded replay store replaced while opening")
        self._env, self._dbs, self._hdr_raw, self._epoch = env, dbs, hdr_raw, epoch
        self._why = why
        self._ident = (st_after.st_dev, st_after.st_ino)
        self._verified_at = time.monotonic()

    def _create(self, reason: str) -> None:
        """Build a complete new store beside ``path`` and rename it into place, so none is seen half made."""
        tmp = f"{self.path}.new-{os.getpid()}-{secrets.token_hex(4)}"
        os.makedirs(tmp)
        try:
            env = self._env_open(tmp, sync=True)
            try:
                with env.begin(write=True) as txn:
                    for i in range(self._k):
                        env.open_db(b"b%03d" % i, txn=txn, create=True)
                    hdr = _HDR.pack(_MAGIC, _FORMAT, self._clock(), self._w, self._k, self._map_size,
                                    _boot_id(), secrets.token_bytes(16))
                    txn.put(_HDR_KEY, hdr + _CRC.pack(zlib.crc32(hdr)))
                    txn.put(_WHY_KEY, reason.encode("utf-8", "replace")[:300])
                    txn.put(_RING_KEY, _pack_ring([]))
                    txn.put(_N_KEY, (0).to_bytes(8, "little"))
                env.sync(True)
            finally:
                env.close()
            os.rename(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        dfd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _quarantine(self, reason: str) -> None:
        """Move a store that will not be used aside, for inspection; keep the three newest such copies."""
        parent, name = os.path.split(self.path)
        dest = f"{self.path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        os.rename(self.path, dest)
        log.warning("embedded replay store at %s moved aside to %s (%s)", self.path, dest, reason)
        old = sorted(n for n in os.listdir(parent) if n.startswith(name + ".damaged-"))
        for n in old[:-3]:
            shutil.rmtree(os.path.join(parent, n), ignore_errors=True)


_OPEN: weakref.WeakValueDictionary[tuple[str, int, float], EmbeddedReplayStore] = weakref.WeakValueDictionary()


@register_store("embedded", usage="embedded")
def _open_embedded(spec: str, state_dir: Path, options: StoreOptions) -> ReplayStore:
    """One open store per directory and layout in a process, shared: LMDB refuses to open the same files
    twice in one process (``explain`` beside a verifier in the same process). Closing it closes it for all."""
    key = (os.path.abspath(state_dir / "replay"), options.max_entries, options.max_ttl)
    store = _OPEN.get(key)
    if store is None or store._closed:
        store = _OPEN[key] = EmbeddedReplayStore(key[0], max_entries=options.max_entries, clock=options.clock,
                                                 max_ttl=options.max_ttl)
    return store
