"""Fixtures that start real processes (redis-server, nginx, Caddy, tokenguard) for integration tests.

Every process fixture registers its own teardown, so a failing test never leaks a process; binaries
that are absent skip the dependent tests with the reason (CI installs them, so they run there).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

StartTokenguard = Callable[..., harness.ManagedProcess]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test (`-m "not integration"` skips it)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _need(binary: str) -> str:
    path = harness.require_binary(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install {binary.replace('-server', '')})")
    return path


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> harness.TLSMaterial:
    """Test CA + localhost server certificate + client certificates CERT1, CERT1b (same key), CERT2."""
    return harness.make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[harness.ThreadedServer]:
    """The protected app: echoes the request (all header lines) it received as JSON."""
    server = harness.serve_in_thread(harness.EchoHandler)
    yield server
    server.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[harness.ManagedProcess]:
    """A fresh redis-server (no persistence) per test; `.port` is where it listens."""
    _need("redis-server")
    proc = harness.start_redis(tmp_path)
    yield proc
    proc.stop()


@pytest.fixture
def start_tokenguard(tmp_path: Path) -> Iterator[StartTokenguard]:
    """Factory: start_tokenguard(config_path, port, workers=2, env=None, settle=True) -> ManagedProcess.

    Runs `python -m tokenguard serve --config FILE --workers N`, waits for /healthz and raises with
    the service's own output if it exits or never gets ready. All started services stop at teardown.
    """
    started: list[harness.ManagedProcess] = []

    def start(
        config: Path,
        port: int,
        *,
        workers: int = 2,
        env: dict[str, str] | None = None,
        timeout: float = harness.READY_TIMEOUT,
        settle: bool = True,
    ) -> harness.ManagedProcess:
        proc = harness.start_tokenguard(config, port, tmp_path / "logs", workers=workers, env=env, timeout=timeout,
                                        settle=settle)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def nginx_binary() -> str:
    return _need("nginx")


@pytest.fixture
def caddy_binary() -> str:
    return _need("caddy")
