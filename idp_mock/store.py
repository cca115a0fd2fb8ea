"""Grant state (authorization codes, PAR requests, tokens) in SQLite under the state directory.

Shared by every worker process, so a code issued by one gunicorn worker is redeemed at another.
Records are keyed by SHA-256 of the credential: the store never holds a usable token or code.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wal_connection(local: threading.local, path: str | os.PathLike[str],
                   synchronous: str = "NORMAL") -> sqlite3.Connection:
    """This thread's connection to a WAL-mode SQLite file, reopened after a fork (never shared)."""
    conn: sqlite3.Connection | None = getattr(local, "conn", None)
    if conn is None or getattr(local, "pid", None) != os.getpid():
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        local.conn, local.pid = conn, os.getpid()
    return conn


def credential_key(value: str) -> str:
    """The lookup key of a token or code: its SHA-256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class GrantStore:
    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._local = threading.local()
        self._conn().executescript(
            "CREATE TABLE IF NOT EXISTS records (ns TEXT NOT NULL, key TEXT NOT NULL, family TEXT NOT NULL,"
            " data TEXT NOT NULL, expires REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (ns, key)) WITHOUT ROWID;"
            "CREATE INDEX IF NOT EXISTS records_family ON records (family);")

    def _conn(self) -> sqlite3.Connection:
        return wal_connection(self._local, self.path)

    def put(self, ns: str, key: str, data: dict[str, Any], ttl: float, family: str = "") -> None:
        now = self.clock()
        conn = self._conn()
        conn.execute("DELETE FROM records WHERE expires <= ?", (now - 3600,))
        conn.execute("INSERT OR REPLACE INTO records (ns, key, family, data, expires, revoked) VALUES (?,?,?,?,?,0)",
                     (ns, key, family, json.dumps(data), now + ttl))

    def get(self, ns: str, key: str) -> dict[str, Any] | None:
        """The record, with ``revoked`` and ``expired`` flags, or None if never stored (or long gone)."""
        row = self._conn().execute("SELECT data, expires, revoked, family FROM records WHERE ns=? AND key=?",
                                   (ns, key)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data.update(_expired=row[1] <= self.clock(), _revoked=bool(row[2]), _family=row[3])
        return data

    def take(self, ns: str, key: str) -> dict[str, Any] | None:
        """Atomically mark a one-time record used and return it; None if absent, expired or already used."""
        conn = self._conn()
        row = conn.execute("UPDATE records SET revoked = 1 WHERE ns=? AND key=? AND revoked = 0 AND expires > ? "
                           "RETURNING data, family", (ns, key, self.clock())).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["_family"] = row[1]
        return data

    def revoke(self, ns: str, key: str) -> None:
        self._conn().execute("UPDATE records SET revoked = 1 WHERE ns=? AND key=?", (ns, key))

    def revoke_family(self, family: str) -> None:
        """Revoke every token issued from one grant (RFC 6749 §4.1.2 code reuse, RFC 7009 §2.1)."""
        if family:
            self._conn().execute("UPDATE records SET revoked = 1 WHERE family=? AND ns != 'code'", (family,))
