"""The replay store a config names, and the start-up check of it: kept apart from :mod:`.wiring` so that
``serve`` can check the store in its master process without importing the web layer (and with it the
metrics client, which must first learn the multiprocess directory)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tokenguard.core.errors import ReplayStoreUnavailable, ReplayStoreUnsafe
from tokenguard.core.replay import DEFAULT_MAX_TTL, ReplayStore, StoreOptions, open_replay_store, scheme_of
from tokenguard.settings import Config

log = logging.getLogger("tokenguard.replay")
Clock = Callable[[], float]


def replay_store(config: Config, *, clock: Clock = time.time, window: float = 0.0) -> ReplayStore:
    """The configured replay store; it keeps keys for ``window`` seconds at least (an hour by default,
    so that a change of the DPoP window does not change the embedded store's layout)."""
    settings = config.replay
    return open_replay_store(settings.store, config.state_dir, options=StoreOptions(
        clock=clock, max_entries=settings.max_entries, max_ttl=max(DEFAULT_MAX_TTL, window),
        allow_eviction=settings.allow_eviction, wait_replicas=settings.wait_replicas))


def replay_store_refusal(config: Config) -> str | None:
    """Checked once at start-up and on reload: why the replay store must not be used, or None.

    A Redis whose eviction policy can drop live ``jti`` keys is refused unless ``replay.allow_eviction``
    says otherwise, and then a warning is logged at every start. A store that cannot be reached now is
    not refused: requests fail closed and ``/readyz`` says so until it answers."""
    if scheme_of(config.replay.store) in ("memory", "embedded"):
        return None
    try:
        store = replay_store(config)
    except ReplayStoreUnavailable:
        return None
    try:
        status = store.status()
    finally:
        store.close()
    for note in status.notes:
        log.warning("replay store: %s", note)
    if isinstance(status.problem, ReplayStoreUnsafe):
        return status.problem.description
    return None

