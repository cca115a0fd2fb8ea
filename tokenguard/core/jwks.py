"""An issuer's signing keys (RFC 9068 §4: keys only from the AS metadata's ``jwks_uri``), kept off the
request path.

A :class:`JwksCache` holds one issuer's key set. Served (``background=True``), a daemon thread per issuer
refreshes it before it expires (at 80 % of ``ttl``), backing off with jitter while the issuer fails, so
requests only read the key set in memory. A request waits for the network in three cases only, and never
longer than ``key_wait``: while this process's first refresh runs, in its first ``key_wait`` seconds;
while a refresh asked for by an unknown ``kid`` runs; and while an issuer without usable keys whose last
attempt failed quickly (down, not slow) is tried again, at most once a second on the host, so that it
serves again as soon as it is back. Otherwise a request for an issuer whose keys are not available is
refused at once (``jwks_unavailable``, naming the issuer and the last error).

The key set's state for the whole host, a :class:`KeyRecord`, lives in a :class:`KeyStore`: served, one
private file per issuer under the state directory (:mod:`tokenguard.keysets`), read at start so that a
restart or a reload with the issuer down keeps serving, and behind a host-wide lock so that one process
fetches an issuer at a time while the others adopt its result. Back-off and the unknown-``kid``
cool-down are therefore host-wide too: a flood of random kids costs one fetch per cool-down
(docs/conformance-cases.md, JWT-RS-10). Keys serve until they are ``max_stale`` old; then the verifier
fails closed and ``/readyz`` says why. Without ``background`` (tests, the mock IdP) the same cycle runs
inline on the request path.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tokenguard.core.errors import InvalidToken, VerifierUnavailable
from tokenguard.core.jwk import ASYMMETRIC_ALGS, PRIVATE_MEMBERS, JWKError, PublicKey, import_public_key, key_fits_alg
from tokenguard.core.metadata import FetchError, FetchJson, discover

log = logging.getLogger(__name__)

DEFAULT_TTL = 300  # seconds a fetched key set is fresh; it is refreshed in the background before that
DEFAULT_COOLDOWN = 30  # at most one unknown-kid fetch per issuer and host in this many seconds
DEFAULT_MAX_STALE = 86400  # seconds fetched keys keep serving while the issuer cannot be reached
DEFAULT_KEY_WAIT = 1.0  # the most a request waits for a fetch (a process's first, unknown kid, issuer back)
REFRESH_AT = 0.8  # refresh when a key set has lived this fraction of its TTL
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # back-off after failed fetches: 1, 2, 4, ... 30 s, plus jitter
_IDLE_CHECK = 30.0  # the refresher looks at the shared record at least this often (other workers' fetches)
#: A ``kid`` that may make the issuer's JWKS be fetched again (RFC 7515 §4.1.4 allows any string; this one
#: is bounded and printable, so a hostile header cannot drive fetches or end up in a log line).
_FETCHABLE_KID = re.compile(r"[\x20-\x7e]{1,256}")

MISSING, DUE, KID = "missing", "due", "kid"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One issuer's key-set state, shared by the processes of a host (times are wall-clock seconds)."""

    jwks: Mapping[str, Any] | None = field(default=None, repr=False)  # the last JWKS that had usable keys
    fetched_at: float | None = None  # when it was fetched
    jwks_uri: str | None = None  # as discovered (RFC 8414), when not configured
    attempted_at: float | None = None  # the last fetch attempt, successful or not
    kid_refresh_at: float | None = None  # the last fetch asked for by an unknown kid
    failures: int = 0  # failed attempts since the last success
    error: str | None = None  # why the last attempt failed
    took: float | None = None  # seconds the last attempt took (a slow issuer is never waited for)

    def to_json(self) -> dict[str, Any]:
        return {"jwks": self.jwks, "fetched_at": self.fetched_at, "jwks_uri": self.jwks_uri,
                "attempted_at": self.attempted_at, "kid_refresh_at": self.kid_refresh_at,
                "failures": self.failures, "error": self.error, "took": self.took}

    @classmethod
    def from_json(cls, data: Any) -> KeyRecord | None:
        """The record in ``data``, or None if anything in it has the wrong type (a damaged file)."""
        if not isinstance(data, dict):
            return None
        times = [data.get(name) for name in ("fetched_at", "attempted_at", "kid_refresh_at", "took")]
        if not all(t is None or isinstance(t, int | float) and not isinstance(t, bool) for t in times):
            return None
        jwks, uri, failures, error = data.get("jwks"), data.get("jwks_uri"), data.get("failures", 0), data.get("error")
        if not (jwks is None or isinstance(jwks, dict)) or not (uri is None or isinstance(uri, str)):
            return None
        if not isinstance(failures, int) or isinstance(failures, bool) or not (error is None or isinstance(error, str)):
            return None
        return cls(jwks, times[0], uri, times[1], times[2], max(0, failures), error, times[3])


def store_key(issuer: str, jwks_uri: str | None) -> str:
    """Under which name a key source's record is kept: keys fetched from another configured ``jwks_uri``
    (a config changed since they were stored) are not this source's keys."""
    return issuer if jwks_uri is None else f"{issuer} {jwks_uri}"


class KeyStore(Protocol):
    """Where the :class:`KeyRecord` of each issuer lives, and the lock that makes one process fetch at a time.

    ``load`` and ``save`` never raise: a store that cannot read or write says why in its own log line,
    and the keys then serve from memory.
    """

    def load(self, issuer: str) -> KeyRecord | None: ...

    def save(self, issuer: str, record: KeyRecord) -> None: ...

    def exclusive(self, issuer: str) -> contextlib.AbstractContextManager[None]: ...


class MemoryKeyStore:
    """Records in this process only (tests, the mock IdP); several caches sharing one act like workers."""

    def __init__(self) -> None:
        self._records: dict[str, KeyRecord] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def load(self, issuer: str) -> KeyRecord | None:
        return self._records.get(issuer)

    def save(self, issuer: str, record: KeyRecord) -> None:
        self._records[issuer] = record

    @contextlib.contextmanager
    def exclusive(self, issuer: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(issuer, threading.Lock())
        with lock:
            yield


@dataclass(frozen=True, slots=True)
class FetchEvent:
    """One fetch attempt of an issuer's keys, for logs and metrics."""

    issuer: str
    ok: bool
    error: str | None = None  # the cause, when it failed
    failures: int = 0  # consecutive failures on this host, this one included
    retry_in: float | None = None  # seconds until the next attempt, when it failed
    recovered: bool = False  # the first success after failures


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    jwk: Mapping[str, Any]
    key: PublicKey


@dataclass(frozen=True, slots=True)
class _View:
    """What requests read: an immutable snapshot, replaced whole (no lock on the request path)."""

    keys: tuple[_Key, ...] = ()
    fetched_at: float | None = None
    record: KeyRecord = field(default_factory=KeyRecord)
    kids: frozenset[str | None] = frozenset()

    def candidates(self, kid: str | None, alg: str) -> list[PublicKey]:
        return [k.key for k in self.keys
                if (kid is None or k.kid == kid) and key_fits_alg(k.jwk, alg) and k.jwk.get("alg", alg) == alg]


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failed fetches (before jitter)."""
    return min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1))


def parse_jwks(document: Mapping[str, Any]) -> list[_Key]:
    """The usable public signing keys of a JWKS; symmetric, private and non-``sig`` keys are skipped."""
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise FetchError("JWKS has no keys array")
    keys = []
    for jwk in raw_keys:
        if not isinstance(jwk, dict) or PRIVATE_MEMBERS.intersection(jwk):
            continue  # symmetric or private keys never verify access tokens
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            keys.append(_Key(jwk.get("kid") if isinstance(jwk.get("kid"), str) else None, jwk,
                             import_public_key(jwk)))
        except JWKError:
            continue
    return keys


class JwksCache:
    """Signing keys of one issuer: refreshed before they expire, shared through a :class:`KeyStore`."""

    def __init__(self, issuer: str, *, jwks_uri: str | None, fetch: FetchJson, ttl: float = DEFAULT_TTL,
                 cooldown: float = DEFAULT_COOLDOWN, max_stale: float = DEFAULT_MAX_STALE,
                 key_wait: float = DEFAULT_KEY_WAIT, clock: Callable[[], float] = time.time,
                 store: KeyStore | None = None, background: bool = False,
                 on_fetch: Callable[[FetchEvent], None] | None = None) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri  # configured; None: discovered from the issuer's metadata
        self.ttl = ttl
        self.cooldown = cooldown
        self.max_stale = max_stale
        self.key_wait = key_wait
        self._fetch = fetch
        self._clock = clock
        self._store: KeyStore = store if store is not None else MemoryKeyStore()
        self._background = background
        self._on_fetch = on_fetch
        self._refresh_after = max(1.0, ttl * REFRESH_AT)
        self._poke_interval = min(1.0, cooldown)
        self._poked: dict[str, float] = {}
        self._wake = threading.Event()
        self._done = threading.Condition()  # guards the fields below; waiters wait on it
        self._reasons: set[str] = set()
        self._kid: str | None = None
        self._generation = 0  # completed refresh cycles
        self._cycling = False
        self._first_until = 0.0  # monotonic: requests may wait for a process's first cycle until then ...
        self._until, self._target = 0.0, 0  # ... and for the cycle a request asked for (kid, missing keys)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._view = _View()
        self._store_key = store_key(issuer, jwks_uri)
        self._adopt(self._store.load(self._store_key))  # keys persisted by an earlier process serve at once

    # -- what the verifier asks ----------------------------------------------------------------------
    @property
    def has_keys(self) -> bool:
        return bool(self._view.keys)

    @property
    def last_error(self) -> str | None:
        return self._view.record.error

    def keys_for(self, kid: str | None, alg: str) -> list[PublicKey]:
        """Keys that may have signed a token with this ``kid`` and ``alg``.

        Call it only for a token that passed every check that needs no key: an unknown ``kid`` may
        make the issuer's JWKS be fetched again.
        """
        if alg not in ASYMMETRIC_ALGS:
            return []
        view = self._usable()
        found = view.candidates(kid, alg)
        if not found and kid is not None and kid not in view.kids and _FETCHABLE_KID.fullmatch(kid):
            view = self._refresh(KID, kid)
            found = view.candidates(kid, alg)
        if not found:
            raise InvalidToken("token_unknown_kid", "No key of the issuer matches the token")
        return found

    def status(self) -> str:
        """``ok`` when keys can verify tokens, else why not (for ``/readyz``; waits only as a request would)."""
        try:
            self._usable()
        except VerifierUnavailable as exc:
            return exc.description
        return "ok"

    def start(self) -> None:
        """Start the background refresher (served mode; also started by the first request)."""
        if self._background and self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._first_until = time.monotonic() + self.key_wait  # bounded once, not per request
                    self._thread = threading.Thread(target=_refresher, args=(weakref.ref(self), self._wake),
                                                     name=f"tokenguard-keys {self.issuer}", daemon=True)
                    weakref.finalize(self, self._wake.set)  # a cache that is gone ends its refresher at once
                    self._thread.start()

    def close(self) -> None:
        """Stop the background refresher (it also stops on its own once the cache is gone)."""
        self._closed = True
        self._wake.set()

    def _usable(self) -> _View:
        view = self._view
        now = self._clock()
        fetched = view.fetched_at
        if fetched is not None and now - fetched < self._refresh_after:
            return view  # the request path: one clock read
        if self._unusable(now):
            view = self._refresh(MISSING)
            if view.fetched_at is None or self._clock() - view.fetched_at > self.max_stale:
                raise VerifierUnavailable("jwks_unavailable", self._problem(view, now))
            return view
        if self._background:
            self.start()  # due for a refresh: the refresher's timer does it
        else:
            view = self._refresh(DUE)
        return view

    def _unusable(self, now: float) -> bool:
        fetched = self._view.fetched_at
        return fetched is None or now - fetched > self.max_stale

    def _problem(self, view: _View, now: float) -> str:
        cause = view.record.error or "not fetched yet"
        if view.fetched_at is None:
            return f"issuer {self.issuer}: no signing keys: {cause}"
        return (f"issuer {self.issuer}: keys are {int(now - view.fetched_at)} s old, more than token.jwks_max_stale "
                f"({int(self.max_stale)} s): {cause}")

    # -- asking for a refresh ------------------------------------------------------------------------
    def _may_poke(self, reason: str) -> bool:
        """At most one request per second asks for a cycle (each takes the host lock and reads the store)."""
        now = self._clock()
        last = self._poked.get(reason)
        if last is not None and 0 <= now - last < self._poke_interval:
            return False
        self._poked[reason] = now
        return True

    def _refresh(self, reason: str, kid: str | None = None) -> _View:
        """Ask for a refresh cycle; inline, run it; served, wait for it only within the ``key_wait`` budget."""
        if not self._background:
            if self._may_poke(reason):
                self._cycle({reason}, kid)
            return self._view
        self.start()
        if self._may_poke(reason):
            with self._done:
                self._reasons.add(reason)
                if kid is not None:
                    self._kid = kid
                if not self._cycling and self._worth_waiting(reason):  # else a cycle (maybe slow) already runs
                    self._until, self._target = time.monotonic() + self.key_wait, self._generation + 1
            self._wake.set()
        view = self._wait(self._until, self._target)
        if reason == MISSING and not view.keys:
            view = self._wait(self._first_until, 1)  # a process's first cycle
        return view

    def _worth_waiting(self, reason: str) -> bool:
        """An unknown kid may bring one fetch per cool-down; missing keys are waited for only when the last
        attempt failed quickly (a down issuer that may be back; a slow one would only make requests wait)."""
        if reason == KID:
            return True
        took = self._view.record.took
        return reason == MISSING and took is not None and took < self.key_wait

    def _wait(self, until: float, generation: int) -> _View:
        with self._done:
            while self._generation < generation:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._done.wait(remaining)
        return self._view

    # -- one refresh cycle ---------------------------------------------------------------------------
    def _run_cycle(self) -> float:
        """One background cycle; returns the seconds until the next one is due."""
        with self._done:
            reasons, kid = self._reasons, self._kid
            self._reasons, self._kid, self._cycling = set(), None, True
        record = self._view.record
        try:
            record = self._cycle(reasons, kid)
        except Exception as exc:  # a bug must not stop the refresher; the type only, never the message
            log.error({"event": "jwks_refresh_error", "issuer": self.issuer, "error": type(exc).__name__})
        finally:
            with self._done:
                self._cycling = False
                self._generation += 1
                self._done.notify_all()
        return self._next_delay(record)

    def _cycle(self, reasons: set[str], kid: str | None) -> KeyRecord:
        """Adopt what another process fetched; if a fetch is (still) due, fetch under the host-wide lock.

        The first look needs no lock (the store replaces records atomically), so a process adopts the
        keys at once even while another one holds the lock for a slow fetch.
        """
        stored = self._store.load(self._store_key)
        self._adopt(stored)
        lost = stored is None and self._view.fetched_at is not None  # the file was removed or damaged
        if not lost and not self._due(self._view.record, self._clock(), reasons, kid):
            return self._view.record
        with self._store.exclusive(self._store_key):
            stored = self._store.load(self._store_key)
            if stored is None and self._view.fetched_at is not None:
                self._store.save(self._store_key, self._view.record)  # put the keys held back for restarts
            before = stored or self._view.record
            self._adopt(before)
            now = self._clock()
            if not self._due(before, now, reasons, kid):
                return before
            record = self._fetched(before, now, kid_asked=KID in reasons)
            self._store.save(self._store_key, record)
        self._adopt(record)
        self._report(before, record)
        return record

    def _due(self, record: KeyRecord, now: float, reasons: set[str], kid: str | None) -> bool:
        if record.failures and record.attempted_at is not None:
            wait = backoff(record.failures)
            if MISSING in reasons and record.took is not None and record.took < self.key_wait and self._unusable(now):
                # Requests need the keys and trying costs next to nothing: the first request after a failed
                # attempt (say, a worker's first, before the issuer was up) tries at once, later ones once a second.
                wait = 0.0 if record.failures == 1 else RETRY_FIRST
            if now < record.attempted_at + wait:
                return False
        if record.fetched_at is None or now - record.fetched_at >= self._refresh_after:
            return True
        if KID in reasons and kid is not None and kid not in self._view.kids:
            return record.kid_refresh_at is None or not 0 <= now - record.kid_refresh_at < self.cooldown
        return False

    def _fetched(self, record: KeyRecord, now: float, *, kid_asked: bool) -> KeyRecord:
        kid_refresh_at = now if kid_asked else record.kid_refresh_at
        started = time.monotonic()
        uri = self.jwks_uri or record.jwks_uri
        try:
            if uri is None:
                found = discover(self.issuer, self._fetch).get("jwks_uri")
                if not isinstance(found, str) or not found:
                    raise FetchError(f"the metadata of {self.issuer} has no jwks_uri")
                uri = found
            document = self._fetch(uri)
            if not parse_jwks(document):
                raise FetchError(f"the JWKS at {uri} has no usable signing key")
        except FetchError as exc:  # back-off counts from the end of the attempt: a slow one is no retry
            return replace(record, jwks_uri=None, attempted_at=self._clock(), kid_refresh_at=kid_refresh_at,
                           failures=record.failures + 1, error=str(exc) or type(exc).__name__,
                           took=time.monotonic() - started)
        done = self._clock()
        return KeyRecord(jwks=document, fetched_at=done, jwks_uri=None if self.jwks_uri else uri,
                         attempted_at=done, kid_refresh_at=kid_refresh_at, took=time.monotonic() - started)

    def _adopt(self, record: KeyRecord | None) -> None:
        """Take ``record`` as this process's view; its keys if they are newer than the ones held."""
        if record is None:
            return
        view = self._view
        keys, fetched_at = view.keys, view.fetched_at
        newer = record.fetched_at is not None and (fetched_at is None or record.fetched_at > fetched_at)
        if newer and record.jwks is not None:
            try:
                parsed = parse_jwks(record.jwks)
            except FetchError:
                parsed = []
            if parsed:
                keys, fetched_at = tuple(parsed), record.fetched_at
        self._view = _View(keys, fetched_at, record, frozenset(k.kid for k in keys))

    def _report(self, before: KeyRecord, after: KeyRecord) -> None:
        if self._on_fetch is None:
            return
        if after.failures:
            self._on_fetch(FetchEvent(self.issuer, False, after.error, after.failures, backoff(after.failures)))
        else:
            self._on_fetch(FetchEvent(self.issuer, True, recovered=before.failures > 0, failures=before.failures))

    def _next_delay(self, record: KeyRecord) -> float:
        now = self._clock()
        if record.failures and record.attempted_at is not None:
            wait = backoff(record.failures)
            return max(0.0, record.attempted_at + wait - now) + random.uniform(0, wait / 4)
        if record.fetched_at is None:
            return RETRY_FIRST
        jitter = random.uniform(0, min(5.0, self._refresh_after / 10))  # hosts refresh at different moments
        return max(0.0, record.fetched_at + self._refresh_after - now) + jitter


def _refresher(ref: weakref.ref[JwksCache], wake: threading.Event) -> None:
    """The background refresher of one cache; it holds only a weak reference, so it ends with the cache."""
    delay = 0.0
    while True:
        if delay > 0:
            wake.wait(min(delay, _IDLE_CHECK))
        wake.clear()
        cache = ref()
        if cache is None or cache._closed:
            return
        delay = max(0.05, cache._run_cycle())
        del cache
