"""Private files written atomically (mode 0600): secrets, keys and state that several processes share.

Shared by tokenguard (nonce secret, persisted state) and the mock IdP (its keys and secrets).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_private(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write ``data`` to ``path`` with mode 0600, atomically: readers see the old file or the new one.

    With ``replace=False`` an existing file wins (several processes racing to create the same file all
    end up reading one content); returns whether this call's data is what ``path`` now holds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if another process created the file first
            return True
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of a private file, creating it once (atomically, 0600) if it does not exist yet."""
    if not path.exists():
        write_private(path, make(), replace=False)
    return path.read_bytes()
