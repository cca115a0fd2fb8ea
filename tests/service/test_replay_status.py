"""``/readyz`` and ``/metrics`` say what state the replay store is in (issue 10): the app in process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _metric(body: str, name: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_a_full_store_shows_in_readyz_and_metrics(make_client: Callable[..., Any]) -> None:
    client = make_client({"replay": {"max_entries": 2}})
    body = client.get("/metrics").get_data(as_text=True)
    assert _metric(body, 'tokenguard_replay_store_state{state="ok"}') == 1.0
    assert _metric(body, "tokenguard_replay_store_capacity") == 2.0
    store = client.application.extensions["tokenguard"].replay
    assert store.first_use("a", 60) and store.first_use("b", 60)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "2 of 2" in ready.get_json()["checks"]["replay_store"]
    body = client.get("/metrics").get_data(as_text=True)
    assert _metric(body, 'tokenguard_replay_store_state{state="full"}') == 1.0
    assert _metric(body, 'tokenguard_replay_store_state{state="ok"}') == 0.0
    assert _metric(body, "tokenguard_replay_store_entries") == 2.0
