"""Prometheus metrics: decisions by result and reason, latency, JWKS fetches, replay-store errors.

Under a multi-process server ``PROMETHEUS_MULTIPROC_DIR`` is set by ``tokenguard serve`` and the
``/metrics`` view aggregates every worker's numbers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from tokenguard.core.verifier import ReplayHealth

DECISIONS = Counter("tokenguard_decisions_total", "Auth decisions", ["result", "reason"])
LATENCY = Histogram("tokenguard_decision_seconds", "Time to decide one auth sub-request",
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
JWKS_FETCHES = Counter("tokenguard_jwks_fetches_total", "JWKS fetches", ["issuer", "outcome"])
REPLAY_ERRORS = Counter("tokenguard_replay_store_errors_total", "Replay store failures (requests failed closed)")
# Read from the store when /metrics is scraped (the worker answering it sets them; the newest value wins).
REPLAY_STATES = ("ok", "reset", "full", "unavailable")
REPLAY_STATE = Gauge("tokenguard_replay_store_state", "1 for the replay store's state now: ok, reset (refusing "
                     "proofs issued before its epoch), full, unavailable", ["state"],
                     multiprocess_mode="livemostrecent")
REPLAY_ENTRIES = Gauge("tokenguard_replay_store_entries", "jti values held (embedded and memory stores)",
                       multiprocess_mode="livemostrecent")
REPLAY_CAPACITY = Gauge("tokenguard_replay_store_capacity", "replay.max_entries", multiprocess_mode="livemostrecent")
REPLAY_EPOCH = Gauge("tokenguard_replay_store_epoch_seconds", "When the replay store's memory began (Unix time)",
                     multiprocess_mode="livemostrecent")


def on_jwks_fetch(issuer: str, ok: bool) -> None:
    JWKS_FETCHES.labels(issuer=issuer, outcome="ok" if ok else "error").inc()


def observe_replay(health: ReplayHealth | None) -> None:
    """Set the replay store gauges from the verifier's account of it (no store, no gauges)."""
    if health is None:
        return
    for state in REPLAY_STATES:
        REPLAY_STATE.labels(state=state).set(1 if state == health.state else 0)
    status = health.status
    if status.entries is not None:
        REPLAY_ENTRIES.set(status.entries)
    if status.capacity is not None:
        REPLAY_CAPACITY.set(status.capacity)
    REPLAY_EPOCH.set(status.epoch)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
