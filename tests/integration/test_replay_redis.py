"""The Redis replay store against real redis-server: standalone and a 3-master + 3-replica Redis Cluster.

Store level: one round trip per call with the epoch beside the key; restart without data, FLUSHALL and
failover move the epoch forward; an evicting policy is refused, a full ``noeviction`` server fails closed;
every failure -- including redis-py's ``RedisClusterException``, which is no ``RedisError`` -- is
``ReplayStoreUnavailable``. Service level (issue 10, "Redis Cluster for real"): two tokenguard instances
on one cluster refuse each other's replays, before, during and after a master is killed and its replica
promoted.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import redis
from redis_cluster import Cluster, start_cluster
from support import wait_for
from test_replay_faults import ROUTES, Client, assert_never_replayed, outcomes, store_ready

from tokenguard.core.errors import ReplayStoreUnavailable, ReplayStoreUnsafe
from tokenguard.core.replay.redis import RedisReplayStore

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[harness.ManagedProcess]:
    if harness.require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    proc = harness.start_redis(tmp_path)
    yield proc
    proc.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if harness.require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    started = time.monotonic()
    running = start_cluster(tmp_path)
    print(f"3 masters + 3 replicas ready in {time.monotonic() - started:.1f} s")
    yield running
    running.stop()


def url(proc: harness.ManagedProcess) -> str:
    return f"redis://127.0.0.1:{proc.port}/0"


# ---------------------------------------------------------------------------------------- standalone


def test_first_use_is_shared_and_expires(server: harness.ManagedProcess) -> None:
    a, b = RedisReplayStore(url(server)), RedisReplayStore(url(server))
    assert a.first_use("k", 75) is True
    assert a.first_use("k", 75) is False and b.first_use("k", 75) is False  # another worker or host sees it
    assert b.seen("k") and not b.seen("other")
    assert b.first_use("short", 0.2)
    wait_for(lambda: b.first_use("short", 0.2), "the key to expire", timeout=10, interval=0.05)
    assert a.status().problem is None


@pytest.mark.parametrize("reset", ["restart without data", "FLUSHALL", "FLUSHDB", "DEL epoch"])
def test_a_reset_moves_the_epoch_forward(tmp_path: Path, server: harness.ManagedProcess, reset: str) -> None:
    """Without the epoch, each of these made ``SET NX`` answer "first use" for a key recorded before."""
    store = RedisReplayStore(url(server))
    assert store.first_use("k", 75)
    before = store.epoch_for("k")
    time.sleep(0.01)
    client = redis.Redis(port=server.port)
    if reset == "restart without data":
        server.stop()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use("during", 75)
        server = harness.start_redis(tmp_path, server.port)
    elif reset == "DEL epoch":
        client.delete("tokenguard:{0}:epoch", "tokenguard:{0}:jti:k")
    else:
        client.execute_command(reset)
    try:
        assert store.first_use("k", 75) is True  # the store forgot it ...
        assert store.epoch_for("k") > before  # ... and says so: the verifier refuses proofs older than this
    finally:
        server.stop()


def test_full_noeviction_server_fails_closed(server: harness.ManagedProcess) -> None:
    store = RedisReplayStore(url(server))
    redis.Redis(port=server.port).config_set("maxmemory", "1")
    with pytest.raises(ReplayStoreUnavailable) as raised:
        store.first_use("k", 75)
    assert "OutOfMemoryError" in raised.value.description


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru", "allkeys-random", "volatile-ttl"])
def test_an_evicting_policy_is_refused_unless_allowed(server: harness.ManagedProcess, policy: str) -> None:
    redis.Redis(port=server.port).config_set("maxmemory-policy", policy)
    store = RedisReplayStore(url(server))
    with pytest.raises(ReplayStoreUnsafe) as raised:
        store.first_use("k", 75)
    assert f"maxmemory-policy {policy}" in raised.value.description
    assert isinstance(store.status().problem, ReplayStoreUnsafe)
    allowed = RedisReplayStore(url(server), allow_eviction=True)
    assert allowed.first_use("k", 75)
    status = allowed.status()
    assert status.problem is None and "allowed by replay.allow_eviction" in status.notes[0]


def test_evictions_start_a_new_epoch(server: harness.ManagedProcess) -> None:
    """Defence in depth with ``allow_eviction``: keys that were evicted could be replayed, so once
    ``evicted_keys`` grows every proof issued before the next status check is refused."""
    client = redis.Redis(port=server.port)
    client.config_set("maxmemory-policy", "volatile-lru")
    store = RedisReplayStore(url(server), allow_eviction=True)
    assert store.status().problem is None
    before = store.epoch_for("k")
    client.config_set("maxmemory", "2mb")
    for i in range(30_000):
        store.first_use(f"key-{i}", 600)
        if i % 1000 == 0 and client.info("stats")["evicted_keys"]:
            break
    assert client.info("stats")["evicted_keys"] > 0
    time.sleep(0.01)
    store.status()
    assert store.epoch_for("k") > before


def test_wait_replicas_without_a_replica_fails_closed(server: harness.ManagedProcess) -> None:
    store = RedisReplayStore(url(server), wait_replicas=1, wait_timeout_ms=50)
    with pytest.raises(ReplayStoreUnavailable) as raised:
        store.first_use("k", 75)
    assert "0 of 1 replicas" in raised.value.description
    assert store.first_use("k", 75) is False  # it was written on the master: never a second "first use"


def test_a_hung_server_costs_one_timeout(server: harness.ManagedProcess) -> None:
    import os
    import signal

    store = RedisReplayStore(url(server), timeout=0.3)
    assert store.first_use("k", 75)
    os.killpg(server.popen.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use("k2", 75)
        assert time.monotonic() - started < 10  # bounded, not hanging
    finally:
        os.killpg(server.popen.pid, signal.SIGCONT)


# ---------------------------------------------------------------------------------------- cluster


def test_cluster_store_spreads_buckets_and_fails_closed_when_all_nodes_are_gone(cluster: Cluster) -> None:
    a, b = RedisReplayStore(cluster.url), RedisReplayStore(cluster.url)
    masters = {cluster.master_of_slot(int(cluster.live()[0].client().execute_command(
        "CLUSTER KEYSLOT", f"tokenguard:{{{tag}}}:epoch"))).port for tag in ("0", "1", "2", "3ff", "200")}
    assert len(masters) >= 2  # the buckets' epoch keys live on several masters
    keys = [f"k{i}" for i in range(60)]
    assert all(a.first_use(k, 75) for k in keys)
    assert not any(b.first_use(k, 75) for k in keys)
    for node in cluster.nodes:
        node.kill()
    # redis-py raises RedisClusterException (no RedisError) when no node answers: still fail closed
    with pytest.raises(ReplayStoreUnavailable):
        a.first_use("after", 75)
    assert a.status().problem is not None


def _key_on(cluster: Cluster, store: RedisReplayStore, master_port: int, prefix: str) -> str:
    client = cluster.live()[0].client()
    for i in range(10_000):
        key = f"{prefix}-{i}"
        slot = int(client.execute_command("CLUSTER KEYSLOT", store._epoch_key(store._tag(key))))
        if cluster.master_of_slot(slot).port == master_port:
            return key
    raise AssertionError("no key maps to that master")


def test_a_write_lost_by_a_failover_moves_the_epoch(cluster: Cluster) -> None:
    """Replication is asynchronous: the master acknowledges a jti its replica never got, then dies and the
    replica is promoted without it. SET NX then says "first use" again; the new master's replication id
    moves that key's epoch past the write, so the verifier refuses every proof that could have been used."""
    store = RedisReplayStore(cluster.url)
    waiting = RedisReplayStore(cluster.url, wait_replicas=1, wait_timeout_ms=100)
    victim = cluster.master_of_slot(0)
    replica = cluster.replica_of(victim)
    key, other = _key_on(cluster, store, victim.port, "lost"), _key_on(cluster, store, victim.port, "waited")
    replica.signal(signal.SIGSTOP)  # cannot reconnect while stopped ...
    victim.client().execute_command("CLIENT KILL TYPE replica")  # ... and the master drops its link
    try:
        assert store.first_use(key, 60)
        written = time.time()
        with pytest.raises(ReplayStoreUnavailable):  # wait_replicas: no replica has it, fail closed
            waiting.first_use(other, 60)
        victim.kill()
    finally:
        replica.signal(signal.SIGCONT)
    print(f"failover in {cluster.wait_ok():.1f} s")

    def first_use() -> bool:
        try:
            return store.first_use(key, 60)
        except ReplayStoreUnavailable:
            return False

    wait_for(first_use, "the promoted replica to answer for the lost key", timeout=30, interval=0.05)
    assert store.epoch_for(key) > written  # the loss is visible: proofs issued before are refused


def test_two_instances_refuse_replays_across_a_failover(
    tmp_path: Path, cluster: Cluster, start_tokenguard: harness.ManagedProcess
) -> None:
    """Issue 10: ``redis+cluster://`` for real. Two tokenguard instances on one 3-master cluster; a master
    is killed (kill -9) and its replica promoted. No proof is ever accepted twice, on either instance."""
    issuer = harness.StubIssuer()
    ports = [harness.free_port(), harness.free_port()]
    try:
        for i, port in enumerate(ports):
            path = harness.tokenguard_config(tmp_path / f"tg{i}.toml", port=port, state_dir=tmp_path / f"state{i}",
                                             issuer=issuer.issuer, store=cluster.url, routes=ROUTES)
            start_tokenguard(path, port, workers=1)  # type: ignore[operator]
        a, b = (Client(issuer, port) for port in ports)
        b.token, b.jwk = a.token, a.jwk  # one client, two verifier hosts
        proofs = [a.proof() for _ in range(30)]
        assert outcomes([a.call(p, ports[0]) for p in proofs]) == {"allowed": 30}
        assert outcomes([a.call(p, ports[1]) for p in proofs]) == {"dpop_replay": 30}

        slot = int(cluster.live()[0].client().execute_command("CLUSTER KEYSLOT", "tokenguard:{0}:epoch"))
        victim = cluster.master_of_slot(slot)
        victim.kill()
        killed_at = time.monotonic()
        during: list[harness.Response] = []
        fresh_during = 0
        while not cluster.is_ok() and time.monotonic() - killed_at < 60:
            for port in ports:
                during.append(a.call(proofs[len(during) % 30], port))
                fresh_during += a.call(port=port).status == 200
        failover = time.monotonic() - killed_at
        assert "allowed" not in outcomes(during), outcomes(during)
        print(f"failover in {failover:.1f} s; during it {len(during)} replays -> {dict(outcomes(during))}, "
              f"{fresh_during} fresh proofs allowed")
        for port in ports:
            refused = assert_never_replayed(a, proofs, port)
            print(f"after failover, instance {port}: 30 pre-failover replays -> {dict(refused)}")
        new = [a.proof() for _ in range(30)]
        wait_for(lambda: all(store_ready(p) for p in ports), "both instances past the failover's reset guard",
                 timeout=90)
        results = [a.call(p, ports[i % 2]) for i, p in enumerate(new)] + [a.call(p, ports[(i + 1) % 2])
                                                                           for i, p in enumerate(new)]
        seen = outcomes(results)
        assert "allowed" in seen and seen["allowed"] <= 30, seen  # each proof at most once across both
        assert set(seen) <= {"allowed", "dpop_replay", "replay_store_reset"}, seen
        fresh = outcomes([a.call(port=ports[i % 2]) for i in range(20)])
        assert fresh == {"allowed": 20}, fresh
        print(f"after failover: new proofs on both instances -> {dict(seen)}; 20/20 fresh allowed")
    finally:
        issuer.close()
