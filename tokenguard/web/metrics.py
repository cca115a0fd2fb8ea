"""Prometheus metrics: decisions by result and reason, latency, JWKS fetches, replay-store errors.

Under a multi-process server ``PROMETHEUS_MULTIPROC_DIR`` is set by ``tokenguard serve`` and the
``/metrics`` view aggregates every worker's numbers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tokenguard.core.jwks import FetchEvent

DECISIONS = Counter("tokenguard_decisions_total", "Auth decisions", ["result", "reason"])
LATENCY = Histogram("tokenguard_decision_seconds", "Time to decide one auth sub-request",
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
JWKS_FETCHES = Counter("tokenguard_jwks_fetches_total", "JWKS fetches", ["issuer", "outcome"])
REPLAY_ERRORS = Counter("tokenguard_replay_store_errors_total", "Replay store failures (requests failed closed)")


def on_jwks_fetch(fetch: FetchEvent) -> None:
    JWKS_FETCHES.labels(issuer=fetch.issuer, outcome="ok" if fetch.ok else "error").inc()


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
