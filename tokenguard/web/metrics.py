"""Prometheus metrics: decisions by result and reason, latency, JWKS fetches, replay-store errors.

Each worker keeps its numbers in plain int64 slots of its own memory-mapped file (one slot per series; a
count is one in-place add, no lock file, no syscall, nothing encoded), and ``/metrics`` adds up every
worker's file at scrape time -- so any worker answers for all of them, and a worker that exited still
counts (counters never go back). ``tokenguard serve`` names the directory (``TOKENGUARD_METRICS_DIR``, one
per server start under the state directory); without it (``--dev``, tests) the slots live in memory.

prometheus-client's multiprocess mode, used before, cost 6.7 µs per decision here (its counter and histogram
each take a lock and write encoded values into their mmap file); recording a decision here costs 1.8 µs
(docs/measurements.md).
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tokenguard.core.jwks import FetchEvent

if TYPE_CHECKING:
    from tokenguard.core.verifier import ReplayHealth

DIR_ENV = "TOKENGUARD_METRICS_DIR"
DECISIONS = "tokenguard_decisions_total"
LATENCY = "tokenguard_decision_seconds"
JWKS_FETCHES = "tokenguard_jwks_fetches_total"
REPLAY_ERRORS = "tokenguard_replay_store_errors_total"
#: Counters: name -> (help, label names). Label values are kept in this order.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    DECISIONS: ("Auth decisions", ("result", "reason")),
    JWKS_FETCHES: ("JWKS fetches", ("issuer", "outcome")),
    REPLAY_ERRORS: ("Replay store failures (requests failed closed)", ()),
}
LATENCY_HELP = "Time to decide one auth sub-request"
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SUM = "sum_ns"  # the latency sum, in whole nanoseconds (an integer slot like every other)

Series = tuple[str, tuple[str, ...]]  # (metric name, label values); a latency bucket is (LATENCY, (le,))
_SLOT = 8
_INITIAL_SLOTS = 512


class Slots:
    """This process's series: int64 slots, in a file ``<pid>.counts`` with its index ``<pid>.series``
    (one JSON line per slot, appended when a series is first seen), or in memory."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.index: dict[Series, int] = {}
        self.lock = threading.Lock()  # gthread workers: one increment at a time
        self.values: memoryview = memoryview(bytearray(_SLOT * _INITIAL_SLOTS)).cast("q")
        if directory is not None:
            pid = os.getpid()
            self._counts, self._series = directory / f"{pid}.counts", directory / f"{pid}.series"
            self._counts.write_bytes(b"")
            self._series.write_bytes(b"")
            self._map(_INITIAL_SLOTS)
        self.latency = [self.slot((LATENCY, (str(bound),))) for bound in (*BUCKETS, "+Inf")]
        self.latency_sum = self.slot((LATENCY, (_SUM,)))
        self.decisions: dict[tuple[str, str], tuple[int, int]] = {}

    def _map(self, capacity: int) -> None:
        """(Re)map the counts file at ``capacity`` slots; what is written stays (the file only grows)."""
        with open(self._counts, "r+b") as handle:
            handle.truncate(capacity * _SLOT)
            self.values = memoryview(mmap.mmap(handle.fileno(), capacity * _SLOT)).cast("q")

    def slot(self, series: Series) -> int:
        """The slot of ``series``, allocated (and indexed for the scraper) the first time."""
        found = self.index.get(series)
        if found is not None:
            return found
        with self.lock:
            number = self.index.setdefault(series, len(self.index))
            if number < len(self.index) - 1:
                return number  # another thread allocated it meanwhile
            if number >= len(self.values):
                if self.directory is not None:
                    self._map(len(self.values) * 2)
                else:
                    bigger = memoryview(bytearray(_SLOT * len(self.values) * 2)).cast("q")
                    bigger[: len(self.values)] = self.values
                    self.values = bigger
            if self.directory is not None:  # after the slot exists: the scraper never indexes past the file
                with open(self._series, "a", encoding="utf-8") as handle:  # one write of one whole line
                    handle.write(json.dumps([series[0], list(series[1])]) + "\n")
        return number

    def record_decision(self, result: str, reason: str, seconds: float) -> None:
        """Count one decision and its latency: the hot path, a few in-place adds."""
        pair = self.decisions.get((result, reason))
        if pair is None:
            errors = self.slot((REPLAY_ERRORS, ())) if reason == "replay_store_unavailable" else -1
            pair = self.decisions[(result, reason)] = (self.slot((DECISIONS, (result, reason))), errors)
        bucket = self.latency[bisect.bisect_left(BUCKETS, seconds)]
        with self.lock:
            values = self.values
            values[pair[0]] += 1
            values[bucket] += 1
            values[self.latency_sum] += int(seconds * 1e9)
            if pair[1] >= 0:
                values[pair[1]] += 1

    def add(self, series: Series) -> None:
        slot = self.slot(series)
        with self.lock:
            self.values[slot] += 1


_slots: Slots | None = None


def slots() -> Slots:
    """This process's slots (a forked child starts its own: see ``os.register_at_fork`` below)."""
    global _slots
    if _slots is None:
        directory = os.environ.get(DIR_ENV)
        _slots = Slots(Path(directory) if directory else None)
    return _slots


def _forget_parents_slots() -> None:
    global _slots
    _slots = None


os.register_at_fork(after_in_child=_forget_parents_slots)


def record_decision(result: str, reason: str, seconds: float) -> None:
    slots().record_decision(result, reason, seconds)


def on_jwks_fetch(fetch: FetchEvent) -> None:
    slots().add((JWKS_FETCHES, (fetch.issuer, "ok" if fetch.ok else "error")))


#: The replay store as the worker answering a scrape sees it (set by :func:`observe_replay` just before).
REPLAY_STATES = ("ok", "reset", "full", "unavailable")
_replay: ReplayHealth | None = None


def observe_replay(health: ReplayHealth | None) -> None:
    """The replay store's state for the next scrape (the store is shared: any worker's view is the host's)."""
    global _replay
    _replay = health


# ------------------------------------------------------------------------------------------ scrape time

def per_worker(directory: Path) -> dict[int, dict[Series, int]]:
    """Every worker's series and values, read from its files (a series indexed but not yet in the
    counts file, or a half-written index line, is simply not there yet)."""
    found: dict[int, dict[Series, int]] = {}
    for index_file in sorted(directory.glob("*.series")):
        try:
            pid = int(index_file.stem)
            lines = index_file.read_text(encoding="utf-8").split("\n")
            counts = memoryview(bytearray((directory / f"{pid}.counts").read_bytes())).cast("q")
        except (OSError, ValueError):
            continue
        values: dict[Series, int] = {}
        for number, line in enumerate(lines[:-1]):  # the last element is "" or a line being written
            if number >= len(counts):
                break
            name, labels = json.loads(line)
            values[(name, tuple(labels))] = counts[number]
        found[pid] = values
    return found


def totals() -> dict[Series, int]:
    """Every series summed over all workers (this process's own slots when there is no directory)."""
    own = slots()
    if own.directory is None:
        return {series: own.values[number] for series, number in own.index.items()}
    summed: dict[Series, int] = {}
    for values in per_worker(own.directory).values():
        for series, value in values.items():
            summed[series] = summed.get(series, 0) + value
    return summed


def _replay_gauges(health: ReplayHealth) -> Iterator[GaugeMetricFamily]:
    state = GaugeMetricFamily("tokenguard_replay_store_state", "1 for the replay store's state now: ok, reset "
                              "(refusing proofs issued before its epoch), full, unavailable", labels=["state"])
    for name in REPLAY_STATES:
        state.add_metric([name], 1.0 if name == health.state else 0.0)
    yield state
    status = health.status
    if status.entries is not None:
        yield GaugeMetricFamily("tokenguard_replay_store_entries", "jti values held (embedded and memory stores)",
                                value=float(status.entries))
    if status.capacity is not None:
        yield GaugeMetricFamily("tokenguard_replay_store_capacity", "replay.max_entries", value=float(status.capacity))
    yield GaugeMetricFamily("tokenguard_replay_store_epoch_seconds", "When the replay store's memory began (Unix time)",
                            value=float(status.epoch))


class _Collector:
    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily | GaugeMetricFamily]:
        if _replay is not None:
            yield from _replay_gauges(_replay)
        summed = totals()
        for name, (help_text, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, help_text, labels=label_names)
            if not label_names:
                family.add_metric([], float(summed.get((name, ()), 0)))
            for (series_name, labels), value in sorted(summed.items()):
                if series_name == name and labels:
                    family.add_metric(list(labels), float(value))
            yield family
        cumulative, buckets = 0, []
        for bound in (*BUCKETS, "+Inf"):
            cumulative += summed.get((LATENCY, (str(bound),)), 0)
            buckets.append((str(bound) if bound == "+Inf" else repr(float(bound)), float(cumulative)))
        yield HistogramMetricFamily(LATENCY, LATENCY_HELP, buckets=buckets,
                                    sum_value=summed.get((LATENCY, (_SUM,)), 0) / 1e9)


_registry = CollectorRegistry(auto_describe=False)
_registry.register(_Collector())


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every worker's numbers."""
    return generate_latest(_registry), CONTENT_TYPE_LATEST
