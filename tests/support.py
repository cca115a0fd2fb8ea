"""Helpers every test package shares: free ports, a settable clock, polling, throwaway certificates.

Importable as ``support`` from any test (the root ``tests/conftest.py`` puts this directory on the path).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    """A currently unused loopback TCP port (there is a small race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0, interval: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after a generous deadline (CI is noisy)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Clock:
    """A settable clock to inject where freezegun cannot reach (callables bound at construction)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def self_signed_cert(key: ec.EllipticCurvePrivateKey | None = None, cn: str = "client", serial: int | None = None,
                     not_before: datetime.datetime | None = None, days: int = 1) -> x509.Certificate:
    """A self-signed EC certificate (RFC 8705 ``self_signed_tls_client_auth`` style)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = not_before or datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))


def settle_replay_store(state_dir: Path | None = None, *, config: Path | None = None,
                        env: Mapping[str, str] | None = None) -> None:
    """Give a new deployment's replay store an epoch an hour old, as one that has been running would have.

    A store that starts empty refuses every DPoP proof issued before its epoch + ``iat_future`` (README,
    "Replay store"), so a freshly started service refuses fresh proofs for ~15 s. Tests about other things
    settle the store first instead of waiting; ``tests/integration/test_replay_faults.py`` tests that guard.
    With ``config`` (and the ``TOKENGUARD_*`` overrides in ``env``) the store is opened exactly as that
    tokenguard config opens it (same layout); with ``state_dir`` the embedded store is opened with the
    defaults, as idp_mock opens it."""
    from tokenguard.core.replay import open_replay_store

    past = time.time() - 3600
    if config is not None:
        from tokenguard.settings import load_config
        from tokenguard.settings.replay import replay_store

        loaded = load_config(str(config), env={**os.environ, **(env or {})})
        if loaded.replay.store == "memory":
            return
        store = replay_store(loaded, clock=lambda: past)
    else:
        assert state_dir is not None
        store = open_replay_store("embedded", state_dir, clock=lambda: past)
    store.close()
