"""A real Redis Cluster for the tests: 3 masters + 3 replicas of redis-server, started in ~2.5 s.

Every node is a :class:`harness.ManagedProcess` (own session, persistence off, free loopback port whose
+10000 cluster-bus port is free too). The cluster is built programmatically (CLUSTER ADDSLOTSRANGE,
SET-CONFIG-EPOCH, MEET, REPLICATE: faster than ``redis-cli --cluster create``, which polls once a
second), with ``cluster-node-timeout 1000`` so that a killed master fails over in ~2.5 s, and
``cluster-require-full-coverage no`` (README: one shard's failover then leaves the others serving).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import redis

SLOTS = 16384


def _free_cluster_port(taken: list[int]) -> int:
    while True:
        port = harness.free_port()
        if port in taken or port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass
class Node:
    port: int
    directory: Path
    proc: harness.ManagedProcess
    _client: redis.Redis | None = field(default=None, repr=False)

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)
        return self._client

    def alive(self) -> bool:
        return self.proc.alive()

    def kill(self) -> None:
        """kill -9 (the node's whole process group)."""
        self.signal(signal.SIGKILL)
        self.proc.popen.wait(timeout=10)

    def signal(self, sig: signal.Signals) -> None:
        os.killpg(self.proc.popen.pid, sig)


def _start_node(tmp: Path, port: int) -> Node:
    directory = tmp / f"cluster-{port}"
    directory.mkdir(parents=True, exist_ok=True)
    binary = harness.require_binary("redis-server")
    assert binary is not None
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(directory), "--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"),
           "--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no",
           "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1",
           "--loglevel", "warning"]  # fmt: skip
    proc = harness.start_process(cmd, name=f"redis-cluster-{port}", log_dir=tmp / "logs", ready_port=port)
    return Node(port, directory, proc)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"redis cluster: timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Cluster:
    nodes: list[Node]

    @property
    def url(self) -> str:
        """The store URL tokenguard is configured with (any live node is a start-up node)."""
        return f"redis+cluster://127.0.0.1:{next(n for n in self.nodes if n.alive()).port}"

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def slot_map(self) -> list[tuple[int, int, int, list[int]]]:
        """(first slot, last slot, master port, replica ports) as the first live node sees it."""
        rows: Any = self.live()[0].client().execute_command("CLUSTER SLOTS")
        return sorted((int(r[0]), int(r[1]), int(r[2][1]), sorted(int(x[1]) for x in r[3:])) for r in rows)

    def replica_of(self, master: Node) -> Node:
        port = next(replicas[0] for _s, _e, p, replicas in self.slot_map() if p == master.port)
        return next(n for n in self.nodes if n.port == port)

    def master_of_slot(self, slot: int) -> Node:
        port = next(p for s, e, p, _ in self.slot_map() if s <= slot <= e)
        return next(n for n in self.nodes if n.port == port)

    def is_ok(self, min_replicas: int = 0) -> bool:
        """Every live node says ok, all agree on a slot map of live owners covering every slot, and every
        live replica's link is up."""
        maps = []
        for node in self.live():
            if node.client().execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                return False
            rows: Any = node.client().execute_command("CLUSTER SLOTS")
            view = sorted((int(r[0]), int(r[1]), int(r[2][1]), len(r) - 3) for r in rows)
            if any(n < min_replicas for *_, n in view):
                return False
            maps.append([v[:3] for v in view])
            repl = node.client().info("replication")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
        live = {n.port for n in self.live()}
        return bool(maps) and all(m == maps[0] for m in maps) and all(p in live for *_, p in maps[0]) \
            and sum(e - s + 1 for s, e, _ in maps[0]) == SLOTS

    def wait_ok(self, min_replicas: int = 0) -> float:
        started = time.monotonic()
        _wait(lambda: self.is_ok(min_replicas), "cluster_state:ok on every node")
        return time.monotonic() - started

    def stop(self) -> None:
        for node in self.nodes:
            if node._client is not None:
                node._client.close()
            node.proc.stop()


def start_cluster(tmp: Path, masters: int = 3, replicas: int = 1) -> Cluster:
    """Start ``masters * (1 + replicas)`` nodes, create the cluster and wait until every replica is in sync."""
    ports: list[int] = []
    for _ in range(masters * (1 + replicas)):
        ports.append(_free_cluster_port(ports))
    cluster = Cluster([])
    try:
        for port in ports:
            cluster.nodes.append(_start_node(tmp, port))
        ids = {n.port: n.client().execute_command("CLUSTER MYID") for n in cluster.nodes}
        per = SLOTS // masters
        for i, node in enumerate(cluster.nodes[:masters]):
            last = SLOTS - 1 if i == masters - 1 else (i + 1) * per - 1
            node.client().execute_command("CLUSTER ADDSLOTSRANGE", i * per, last)
            node.client().execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
        for node in cluster.nodes[1:]:
            cluster.nodes[0].client().execute_command("CLUSTER MEET", "127.0.0.1", node.port)

        def everyone_knows_everyone() -> bool:
            for node in cluster.nodes:
                known: Any = node.client().execute_command("CLUSTER NODES")
                if {v["node_id"] for v in known.values() if "handshake" not in v["flags"]} != set(ids.values()):
                    return False
            return True

        _wait(everyone_knows_everyone, "CLUSTER MEET to propagate")
        for i, replica in enumerate(cluster.nodes[masters:]):
            replica.client().execute_command("CLUSTER REPLICATE", ids[cluster.nodes[i % masters].port])
        cluster.wait_ok(min_replicas=replicas)
    except BaseException:
        cluster.stop()
        raise
    return cluster
