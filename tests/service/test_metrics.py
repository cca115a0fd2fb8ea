"""Per-worker metric slots: every worker counts in its own file, a scrape adds them all up."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from tokenguard.core.jwks import FetchEvent
from tokenguard.web import metrics


def _worker(directory: str, decisions: int, reason: str) -> None:
    os.environ[metrics.DIR_ENV] = directory  # read on first use, as in a worker of `tokenguard serve`
    for n in range(decisions):
        metrics.record_decision("deny", reason, 0.0003 if n % 2 else 0.02)
    metrics.on_jwks_fetch(FetchEvent("https://as.test", True))


def _run_workers(directory: Path, jobs: list[tuple[int, str]]) -> list[int]:
    ctx = multiprocessing.get_context("fork")  # as gunicorn forks its workers (uvicorn spawns: same files)
    procs = [ctx.Process(target=_worker, args=(str(directory), n, reason)) for n, reason in jobs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    return [proc.pid for proc in procs if proc.pid is not None]


def test_a_scrape_adds_up_every_worker_also_one_that_exited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids = _run_workers(tmp_path, [(7, "dpop_replay"), (5, "dpop_replay"), (3, "replay_store_unavailable")])
    per = metrics.per_worker(tmp_path)
    assert set(per) == set(pids)  # the workers exited: their numbers still count (counters never go back)
    assert [per[pid][(metrics.DECISIONS, ("deny", "dpop_replay"))] for pid in pids[:2]] == [7, 5]
    monkeypatch.setenv(metrics.DIR_ENV, str(tmp_path))
    monkeypatch.setattr(metrics, "_slots", None)  # this process, as a worker of the same server
    metrics.record_decision("allow", "ok", 0.004)
    text = metrics.exposition()[0].decode()
    assert 'tokenguard_decisions_total{reason="dpop_replay",result="deny"} 12.0' in text
    assert 'tokenguard_decisions_total{reason="ok",result="allow"} 1.0' in text
    assert "tokenguard_replay_store_errors_total 3.0" in text
    assert 'tokenguard_jwks_fetches_total{issuer="https://as.test",outcome="ok"} 3.0' in text
    # 16 decisions: 6 at 0.3 ms, 9 at 20 ms, 1 at 4 ms; buckets are cumulative
    assert 'tokenguard_decision_seconds_bucket{le="0.0005"} 6.0' in text
    assert 'tokenguard_decision_seconds_bucket{le="0.005"} 7.0' in text
    assert 'tokenguard_decision_seconds_bucket{le="0.025"} 16.0' in text
    assert 'tokenguard_decision_seconds_bucket{le="+Inf"} 16.0' in text
    assert "tokenguard_decision_seconds_count 16.0" in text
    total = float(next(line for line in text.splitlines() if line.startswith("tokenguard_decision_seconds_sum"))
                  .split()[1])
    assert total == pytest.approx(6 * 0.0003 + 9 * 0.02 + 0.004, rel=1e-6)


def test_a_forked_child_counts_in_its_own_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.DIR_ENV, str(tmp_path))
    monkeypatch.setattr(metrics, "_slots", None)
    metrics.record_decision("allow", "ok", 0.001)  # the parent's own slots exist before the fork
    (child,) = _run_workers(tmp_path, [(2, "dpop_replay")])
    per = metrics.per_worker(tmp_path)
    assert per[os.getpid()][(metrics.DECISIONS, ("allow", "ok"))] == 1
    assert (metrics.DECISIONS, ("allow", "ok")) not in per[child]
    assert per[child][(metrics.DECISIONS, ("deny", "dpop_replay"))] == 2


def test_many_series_grow_the_file_without_losing_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.DIR_ENV, str(tmp_path))
    monkeypatch.setattr(metrics, "_slots", None)
    for n in range(1500):  # past the first mapping (512 slots), twice
        metrics.on_jwks_fetch(FetchEvent(f"https://as{n}.test", n % 3 != 0))
    metrics.on_jwks_fetch(FetchEvent("https://as0.test", False))
    mine = metrics.per_worker(tmp_path)[os.getpid()]
    assert mine[(metrics.JWKS_FETCHES, ("https://as0.test", "error"))] == 2
    assert mine[(metrics.JWKS_FETCHES, ("https://as1499.test", "ok"))] == 1
    assert sum(v for (name, _), v in mine.items() if name == metrics.JWKS_FETCHES) == 1501


def test_without_a_directory_the_slots_live_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.DIR_ENV, raising=False)
    monkeypatch.setattr(metrics, "_slots", None)
    for _ in range(600):
        metrics.record_decision("deny", "no_credentials", 0.0001)
    for n in range(600):  # more series than the first allocation
        metrics.on_jwks_fetch(FetchEvent(f"https://as{n}.test", True))
    summed = metrics.totals()
    assert summed[(metrics.DECISIONS, ("deny", "no_credentials"))] == 600
    assert summed[(metrics.JWKS_FETCHES, ("https://as599.test", "ok"))] == 1
