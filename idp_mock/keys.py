"""The IdP's signing keys, persisted in the state directory, with publish-before-sign rotation.

States: ``current`` (signs), ``next`` (published in the JWKS, not yet signing), ``retired`` (no longer
signs, still published until every token it signed has expired). ``rotate()`` stages a ``next`` key;
it becomes ``current`` after ``rotation_grace`` seconds, or at once on a second ``rotate()``. So a
verifier that sees a new ``kid`` can always find it at ``jwks_uri`` (RFC 9068 §4;
docs/conformance-cases.md, JWT-RS-09).

The file is shared by every worker process: writes take an ``flock`` and replace the file atomically;
readers reload it when it changes.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from joserfc import jwk as jose_jwk

from tokenguard.client.keys import generate_jwk as new_private_jwk
from tokenguard.core.jwk import public_jwk

from .config import SIGNING_ALGS

KEYS_FILE = "keys.json"


def generate_jwk(alg: str) -> dict[str, Any]:
    """A new private signing JWK for ``alg``; ``kid`` is its RFC 7638 thumbprint (tokenguard's keygen)."""
    if alg not in SIGNING_ALGS:
        raise ValueError(f"unsupported signing alg {alg}")
    return {**new_private_jwk(alg), "use": "sig"}


class KeyManager:
    def __init__(self, state_dir: str | os.PathLike[str], *, alg: str = "RS256", rotation_grace: int = 300,
                 retain: int = 900, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / KEYS_FILE
        self.alg = alg
        self.rotation_grace = rotation_grace
        self.retain = retain  # how long a retired key stays published: >= access-token lifetime + leeway
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[dict[str, Any]] = []
        self._imported: dict[str, jose_jwk.Key] = {}
        with self._locked():
            if not self._read():
                self._write([self._entry("current")])

    # -- persistence -----------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, open(self.dir / "keys.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = [], None
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            self._keys, self._stamp = list(document["keys"]), stamp
        return self._keys

    def _write(self, keys: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"keys": keys}, out, indent=1)
        os.replace(tmp, self.path)
        self._stamp = None
        self._read()

    def _entry(self, status: str) -> dict[str, Any]:
        now = self.clock()
        return {"jwk": generate_jwk(self.alg), "status": status, "created": now,
                "activates": now + self.rotation_grace if status == "next" else now, "retired": None}

    # -- state transitions -----------------------------------------------------------------------
    def _promote(self, keys: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        out = []
        for entry in keys:
            entry = dict(entry)
            if entry["status"] == "current":
                entry["status"], entry["retired"] = "retired", now
            elif entry["status"] == "next":
                entry["status"], entry["activates"] = "current", now
            out.append(entry)
        return [e for e in out if e["status"] != "retired" or now - e["retired"] < self.retain]

    def _due(self, keys: list[dict[str, Any]], now: float) -> bool:
        return any(e["status"] == "next" and e["activates"] <= now for e in keys)

    def _current_keys(self) -> list[dict[str, Any]]:
        keys = self._read()
        now = self.clock()
        if self._due(keys, now) or any(e["status"] == "retired" and now - e["retired"] >= self.retain
                                       for e in keys):
            with self._locked():
                keys = self._read()
                if self._due(keys, now):
                    self._write(self._promote(keys, now))
                else:
                    self._write([e for e in keys if e["status"] != "retired" or now - e["retired"] < self.retain])
                keys = self._read()
        return keys

    def rotate(self) -> dict[str, Any]:
        """Stage a new key (published, not signing); if one is already staged, make it sign now."""
        with self._locked():
            keys = self._read()
            now = self.clock()
            if any(e["status"] == "next" for e in keys):
                keys = self._promote(keys, now)
            else:
                keys = [*keys, self._entry("next")]
            self._write(keys)
        return self.status()

    def status(self) -> dict[str, Any]:
        keys = self._current_keys()
        return {"keys": [{"kid": e["jwk"]["kid"], "alg": e["jwk"]["alg"], "status": e["status"],
                          "activates": int(e["activates"])} for e in keys]}

    # -- faces -----------------------------------------------------------------------------------
    def signing_key(self) -> tuple[str, str, jose_jwk.Key]:
        """``(kid, alg, key)`` of the current signing key."""
        for entry in self._current_keys():
            if entry["status"] == "current":
                data = entry["jwk"]
                key = self._imported.get(data["kid"])
                if key is None:
                    key = jose_jwk.import_key(data)
                    self._imported[data["kid"]] = key
                return data["kid"], data["alg"], key
        raise RuntimeError("no current signing key in the state directory")

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set served at ``jwks_uri``: current, staged and recently retired public keys."""
        return {"keys": [public_jwk(e["jwk"]) for e in self._current_keys()]}
