"""Issuers' key sets shared by the workers of a host, kept under the state directory.

One private file per issuer (``state_dir/jwks/<sha256 of the issuer>.json``, written atomically, 0600)
holds its :class:`~tokenguard.core.jwks.KeyRecord`: the last JWKS that had usable keys, when it was
fetched, and the fetch attempts since. Every worker reads it at start, so a restart or a SIGHUP reload
with the issuer down keeps serving from it. A lock file per issuer (``flock``) makes one process fetch an
issuer at a time; the others then adopt what it wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from tokenguard.core.jwks import KeyRecord
from tokenguard.files import write_private

log = logging.getLogger(__name__)


class FileKeyStore:
    """:class:`~tokenguard.core.jwks.KeyStore` in files: shared by processes, surviving restarts."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "jwks"

    def _path(self, issuer: str, suffix: str) -> Path:
        return self.directory / (hashlib.sha256(issuer.encode()).hexdigest()[:32] + suffix)

    def load(self, issuer: str) -> KeyRecord | None:
        path = self._path(issuer, ".json")
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # unreadable or damaged: the next fetch rewrites it
            log.warning({"event": "jwks_file_unreadable", "issuer": issuer, "path": str(path),
                         "error": type(exc).__name__})
            return None
        record = KeyRecord.from_json(data.get("record")) if isinstance(data, dict) else None
        if record is None or data.get("issuer") != issuer:
            log.warning({"event": "jwks_file_unreadable", "issuer": issuer, "path": str(path),
                         "error": "not a key record of this issuer"})
            return None
        return record

    def save(self, issuer: str, record: KeyRecord) -> None:
        data = json.dumps({"issuer": issuer, "record": record.to_json()}, separators=(",", ":")).encode()
        try:
            write_private(self._path(issuer, ".json"), data)
        except OSError as exc:  # the keys still serve from memory; a restart would have to fetch them
            log.error({"event": "jwks_file_unwritable", "issuer": issuer, "path": str(self.directory),
                       "error": f"{type(exc).__name__}: {exc.strerror}"})

    @contextlib.contextmanager
    def exclusive(self, issuer: str) -> Iterator[None]:
        """Hold the issuer's host-wide fetch lock (released by the kernel if the process dies)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(issuer, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # no lock to be had: fetch anyway, at worst once per worker
            log.error({"event": "jwks_file_unwritable", "issuer": issuer, "path": str(self.directory),
                       "error": f"{type(exc).__name__}: {exc.strerror}"})
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
