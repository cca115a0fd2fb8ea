"""``redis://`` / ``rediss://`` / ``unix://`` / ``redis+cluster://``: any number of workers and hosts.

Per request exactly one round trip, to the master that owns the key: ``EVALSHA`` of :data:`FIRST_USE_LUA`,
which atomically runs ``SET jti 1 NX PX ttl`` and reads the *epoch* key beside it (``replay.wait_replicas``
pipelines ``WAIT n`` on the same connection). The epoch key (no TTL, value ``"<ms>:<master_replid>"``)
says since when the record of used keys is complete: it vanishes with a restart without persistence,
FLUSHALL/FLUSHDB or its own eviction, and its replication id changes with every restart and every
promotion of a replica (which may lack the last writes); the script then starts a new epoch. In a
cluster the keys are spread over 1024 hash-tag buckets, each with its own epoch key in the same slot.

Eviction of ``jti`` keys cannot be seen per request, so the store reads ``maxmemory_policy`` from
``INFO memory`` on every node (``CONFIG`` is often disabled on managed Redis): only ``noeviction`` keeps
every unexpired key. Any other policy is refused unless ``replay.allow_eviction`` is set, and growth of
``evicted_keys`` starts a new epoch. Every failure -- including redis-py's ``RedisClusterException``,
which is not a ``RedisError`` -- raises :class:`ReplayStoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from tokenguard.core.errors import ReplayStoreUnavailable, ReplayStoreUnsafe
from tokenguard.core.replay import PingByStatus, ReplayStore, StoreOptions, StoreStatus, register_store

log = logging.getLogger("tokenguard.replay")

_EPOCH_LUA = """
local function current_epoch(epoch_key, now_ms)
  local ident = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
  local epoch = redis.call('GET', epoch_key)
  if (not epoch) or string.sub(epoch, -(#ident + 1)) ~= (':' .. ident) then
    epoch = now_ms .. ':' .. ident
    redis.call('SET', epoch_key, epoch)
  end
  return epoch
end
"""
#: KEYS[1] jti key, KEYS[2] epoch key (same slot); ARGV[1] ttl ms, ARGV[2] now ms -> {1 if new else 0, epoch}.
FIRST_USE_LUA = _EPOCH_LUA + """
local fresh = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1])
local epoch = current_epoch(KEYS[2], ARGV[2])
if fresh then return {1, epoch} end
return {0, epoch}
"""
#: KEYS[1] epoch key; ARGV[1] now ms -> the epoch, created or bumped exactly as FIRST_USE_LUA would.
EPOCH_LUA = _EPOCH_LUA + "\nreturn current_epoch(KEYS[1], ARGV[1])\n"

_ERRORS = (RedisError, RedisClusterException, OSError)
SAFE_POLICY = "noeviction"
_RECHECK_UNSAFE = 10.0  # seconds between policy checks while a node's policy is unknown or unsafe
_CLUSTER_BUCKETS = 1024


def _describe(exc: BaseException) -> str:
    """The failure in words, naming the modes the verifier fails closed on (never a password)."""
    if isinstance(exc, OutOfMemoryError):
        return "OutOfMemoryError (server full under noeviction)"
    if isinstance(exc, ClusterDownError):
        return "ClusterDownError (failover in progress or slots uncovered)"
    if isinstance(exc, ReadOnlyError):
        return "ReadOnlyError (talking to a replica)"
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def eviction_problem(node: str, info_memory: dict[str, Any]) -> str | None:
    """Why one node can drop a key before its TTL expires, or None (``noeviction``).

    ``maxmemory 0`` does not make another policy safe: the limit can be set at runtime, and managed
    Redis sets one for you."""
    policy = info_memory.get("maxmemory_policy")
    if policy is None:
        return f"{node}: INFO memory has no maxmemory_policy: cannot verify that keys are never evicted"
    if policy == SAFE_POLICY:
        return None
    return (f"{node}: maxmemory-policy {policy} evicts keys before they expire, so a replayed proof would be "
            "accepted again; set noeviction")


class RedisReplayStore(PingByStatus):
    """``first_use`` over standalone Redis or Redis Cluster; every failure raises ReplayStoreUnavailable."""

    def __init__(self, url: str, *, prefix: str = "tokenguard:", timeout: float = 0.5,
                 allow_eviction: bool = False, wait_replicas: int = 0, wait_timeout_ms: int = 100,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = url.startswith("redis+cluster://")
        parts = urlsplit(url)
        self.name = f"redis {'cluster ' if self.cluster else ''}replay store {parts.hostname or parts.path}" + (
            f":{parts.port}" if parts.port else "")
        common: dict[str, Any] = {"socket_timeout": timeout + (wait_timeout_ms / 1000 if wait_replicas else 0),
                                  "socket_connect_timeout": timeout}
        self._client: redis.Redis | RedisCluster
        try:
            if self.cluster:
                # The hot path bypasses RedisCluster's retry loop (_run); admin calls retry once.
                self._client = RedisCluster.from_url("redis://" + url[len("redis+cluster://"):],
                                                     retry=Retry(NoBackoff(), 1), **common)
            else:
                # One immediate retry on connection errors only (a stale pooled connection after a restart);
                # a timeout is never retried: that would double the stall of a hung server.
                self._client = redis.Redis.from_url(
                    url, retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                    retry_on_error=[RedisConnectionError], health_check_interval=30, **common)
        except _ERRORS as exc:
            raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
        self.prefix = prefix
        self.allow_eviction = allow_eviction
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._clock = clock
        self._tags = [format(i, "x") for i in range(_CLUSTER_BUCKETS if self.cluster else 1)]
        self._sha = hashlib.sha1(FIRST_USE_LUA.encode()).hexdigest()  # noqa: S324 - Redis' script id
        self._epoch_sha = hashlib.sha1(EPOCH_LUA.encode()).hexdigest()  # noqa: S324
        self._lock = threading.Lock()
        self._epochs: dict[str, float] = {}  # bucket tag -> newest epoch seen (seconds)
        self._newest = 0.0
        self._priming = False
        self._evicted: dict[str, int] = {}
        self._unsafe: ReplayStoreUnsafe | None = None  # an evicting policy found and not allowed
        self._policy_checked_at = -float("inf")
        self._notes: tuple[str, ...] = ()
        try:  # best effort: an unreachable server is reported per request and by /readyz, not here
            self.check_eviction()
            self.prime_epochs()
        except ReplayStoreUnavailable as exc:
            log.warning("%s: not checked at start (%s); checked again when it answers", self.name, exc.description)

    # ----------------------------------------------------------------------------------- key layout

    def _tag(self, key: str) -> str:
        return self._tags[zlib.crc32(key.encode()) % len(self._tags)] if self.cluster else self._tags[0]

    def _epoch_key(self, tag: str) -> str:
        return f"{self.prefix}{{{tag}}}:epoch"

    def _jti_key(self, key: str, tag: str) -> str:
        return f"{self.prefix}{{{tag}}}:jti:{key}"

    # ----------------------------------------------------------------------------------- per request

    def first_use(self, key: str, ttl: float) -> bool:
        """One round trip: record ``key`` for ``ttl`` seconds and learn its bucket's epoch."""
        if self._unsafe is not None or self._policy_checked_at == -float("inf"):
            self._recheck_policy()
        tag = self._tag(key)
        fresh, epoch, acked = self._run(self._jti_key(key, tag), self._epoch_key(tag),
                                        [max(1, int(ttl * 1000)), int(self._clock() * 1000)])
        self._note_epoch(tag, int(epoch.split(b":", 1)[0]) / 1000)
        if not fresh:
            return False  # recorded before: a replay, whatever the epoch says
        if self.wait_replicas and acked is not None and acked < self.wait_replicas:
            raise ReplayStoreUnavailable(f"{self.name}: {acked} of {self.wait_replicas} replicas acknowledged "
                                         f"the key within {self.wait_timeout_ms} ms (replay.wait_replicas)")
        return True

    def epoch_for(self, key: str) -> float:
        return self._epochs.get(self._tag(key), self._newest)

    def seen(self, key: str) -> bool:
        tag = self._tag(key)
        try:
            return bool(self._client.exists(self._jti_key(key, tag)))
        except _ERRORS as exc:
            raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc

    def _recheck_policy(self) -> None:
        """While a node's policy is unsafe (or was never read), look again at most every 10 s; refuse meanwhile."""
        if time.monotonic() - self._policy_checked_at >= _RECHECK_UNSAFE:
            self.check_eviction()
        if self._unsafe is not None:
            raise self._unsafe

    def _note_epoch(self, tag: str, epoch: float) -> None:
        """Keep the newest epoch per bucket; a newer one means a reset: log it and re-stamp every bucket."""
        with self._lock:
            old = self._epochs.get(tag, 0.0)
            if epoch <= old:
                return
            self._epochs[tag] = epoch
            self._newest = max(self._newest, epoch)
            if not old or self._priming:
                return
            self._priming = True
        log.warning("%s: epoch of bucket %s moved from %.3f to %.3f (restart without data, FLUSHALL, eviction of "
                    "the epoch key, or failover to a replica): proofs issued before it are refused", self.name,
                    tag, old, epoch)

        def prime() -> None:
            try:
                self.prime_epochs()
            except ReplayStoreUnavailable:
                pass  # best effort: first_use stays correct without it
            finally:
                self._priming = False

        threading.Thread(target=prime, name="replay-epoch-prime", daemon=True).start()

    def _node(self, key: str) -> tuple[redis.Redis, str]:
        if isinstance(self._client, RedisCluster):
            node = self._client.get_node_from_key(key)
            return self._client.get_redis_connection(node), node.name
        return self._client, "standalone"

    def _refresh_topology(self, failed: str | None = None) -> None:
        """Re-read CLUSTER SLOTS, asking the failed node last (a hung one then costs no extra timeout)."""
        if isinstance(self._client, RedisCluster):
            with contextlib.suppress(*_ERRORS):  # the next request tries again
                self._client.nodes_manager.initialize(last_failed_node_name=failed)

    def _run(self, jti_key: str, epoch_key: str, args: list[Any]) -> tuple[int, bytes, int | None]:
        """One pipelined round trip to the key's master: EVALSHA [+ WAIT on the same connection].

        Retried only after NOSCRIPT, a MOVED redirect, or a connection error after which the slot has a new
        master (failover finished). A retried SET NX may find its own earlier write: a false "replay",
        never a false "first use"."""
        last: BaseException | None = None
        for _ in range(3):
            try:
                node, name = self._node(jti_key)
            except _ERRORS as exc:  # SlotNotCoveredError, no node reachable
                self._refresh_topology()
                raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
            pipe = node.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", self._sha, 2, jti_key, epoch_key, *args)
            if self.wait_replicas:
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                results = pipe.execute(raise_on_error=False)
            except _ERRORS as exc:  # ConnectionError, TimeoutError
                last = exc
                self._refresh_topology(failed=name)
                if self.cluster:
                    try:
                        moved = self._node(jti_key)[1] != name
                    except _ERRORS:
                        moved = False
                    if moved:
                        continue
                raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
            first = results[0]
            if isinstance(first, NoScriptError):  # a restarted server or a promoted replica
                last = first
                try:
                    node.script_load(FIRST_USE_LUA)
                except _ERRORS as exc:
                    raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
                continue
            if isinstance(first, MovedError):  # resharded or failed over: refresh and retry (ASK: fail closed)
                last = first
                self._refresh_topology()
                continue
            if isinstance(first, Exception):
                raise ReplayStoreUnavailable(f"{self.name}: {_describe(first)}") from first
            acked = None
            if self.wait_replicas:
                if isinstance(results[1], Exception):
                    raise ReplayStoreUnavailable(f"{self.name}: WAIT: {_describe(results[1])}") from results[1]
                acked = int(results[1])
            return int(first[0]), first[1], acked
        raise ReplayStoreUnavailable(f"{self.name}: gave up after 3 attempts: "
                                     f"{_describe(last) if last else 'unknown'}") from last

    # ----------------------------------------------------------------------------------- epochs, checks

    def prime_epochs(self) -> None:
        """Create or bump (same rules as the per-request script) every bucket's epoch now: one pipeline per
        master. A reset then costs one margin of refusals, not one per bucket at its first touch."""
        now_ms = int(self._clock() * 1000)
        groups: dict[str, tuple[redis.Redis, list[str]]] = {}
        try:
            for tag in self._tags:
                node, name = self._node(self._epoch_key(tag))
                groups.setdefault(name, (node, []))[1].append(tag)
            seen: dict[str, float] = {}
            for node, tags in groups.values():
                node.script_load(EPOCH_LUA)
                pipe = node.pipeline(transaction=False)
                for tag in tags:
                    pipe.execute_command("EVALSHA", self._epoch_sha, 1, self._epoch_key(tag), now_ms)
                for tag, value in zip(tags, pipe.execute(), strict=True):
                    seen[tag] = int(value.split(b":", 1)[0]) / 1000
        except _ERRORS as exc:
            self._refresh_topology()
            raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
        with self._lock:
            for tag, epoch in seen.items():
                self._epochs[tag] = max(self._epochs.get(tag, 0.0), epoch)
            self._newest = max(self._newest, *seen.values())

    def _bump_epochs(self) -> None:
        """Start a new epoch in every bucket now (keys were evicted)."""
        try:
            for tag in self._tags:
                self._client.delete(self._epoch_key(tag))
        except _ERRORS as exc:
            raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
        self.prime_epochs()

    def _info_all(self, section: str) -> dict[str, dict[str, Any]]:
        """``INFO <section>`` of every node, replicas included (a replica can be promoted)."""
        if isinstance(self._client, RedisCluster):
            return {node.name: self._client.get_redis_connection(node).info(section)
                    for node in self._client.get_nodes()}
        return {self.name.rpartition(" ")[2]: self._client.info(section)}

    def check_eviction(self) -> list[str]:
        """The nodes whose policy can drop a live key, in words (refused unless ``allow_eviction``)."""
        try:
            infos = self._info_all("memory")
        except _ERRORS as exc:
            raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
        problems = [p for name, info in sorted(infos.items()) if (p := eviction_problem(name, info))]
        self._policy_checked_at = time.monotonic()
        if problems and not self.allow_eviction:
            self._unsafe = ReplayStoreUnsafe("; ".join(problems) + " (or set replay.allow_eviction = true)")
        else:
            self._unsafe = None
        self._notes = tuple(f"{p} (allowed by replay.allow_eviction)" for p in problems) if self.allow_eviction \
            else ()
        return problems

    def _watch_evictions(self) -> None:
        """Defence in depth: any growth of ``evicted_keys`` since last seen starts a new epoch."""
        try:
            stats = self._info_all("stats")
        except _ERRORS as exc:
            raise ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}") from exc
        grew = []
        with self._lock:
            for name, info in stats.items():
                evicted = int(info.get("evicted_keys", 0))
                if evicted > self._evicted.get(name, 0):
                    grew.append(f"{name}: {evicted - self._evicted.get(name, 0)} keys evicted")
                self._evicted[name] = evicted
        if grew:
            log.warning("%s: %s; starting a new epoch", self.name, "; ".join(grew))
            self._bump_epochs()

    def status(self) -> StoreStatus:
        """Reachable, every node's eviction policy, evictions since last look; never raises."""
        try:
            self._client.ping()
            self.check_eviction()
            self._watch_evictions()
            if not self.cluster:  # one bucket: learn of a reset without waiting for traffic
                self.prime_epochs()
        except _ERRORS as exc:
            return StoreStatus(self.name, problem=ReplayStoreUnavailable(f"{self.name}: {_describe(exc)}"),
                               epoch=self._newest)
        except ReplayStoreUnavailable as exc:
            return StoreStatus(self.name, problem=exc, epoch=self._newest)
        return StoreStatus(self.name, problem=self._unsafe, epoch=self._newest,
                           reset="new, restarted without its data, flushed, or failed over", notes=self._notes)

    def close(self) -> None:
        self._client.close()


@register_store("redis", "rediss", "unix", "redis+cluster",
                usage="a redis://, rediss://, unix:// or redis+cluster:// URL")
def _open(spec: str, state_dir: Path, options: StoreOptions) -> ReplayStore:
    return RedisReplayStore(spec, allow_eviction=options.allow_eviction, wait_replicas=options.wait_replicas,
                            clock=options.clock)
