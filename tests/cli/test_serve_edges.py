"""Issue 13 §4.3 and §4.5: ``tokenguard serve`` on a busy port, and its metrics directory.

A busy port made gunicorn repeat "Connection in use" five times and granian print a Rust backtrace; both
engines now stop at one line that names the port and ``--listen``. Every start left a ``metrics-<pid>``
directory in ``state_dir``; the server now removes its own at exit and those of dead servers at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, wait_for

from tokenguard.serving import ENGINES

REPO = Path(__file__).resolve().parents[2]


def _serve(config: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "tokenguard", "serve", "--config", str(config), *argv]


def _config(tmp_path: Path, port: int, engine: str = "gunicorn") -> Path:
    config = tmp_path / "tg.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\nengine = "{engine}"\nworkers = 1\n'
                      f'state_dir = "{tmp_path / "state"}"\n')
    return config


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_busy_port_is_one_line_naming_it_and_listen(tmp_path: Path, busy_port: int, engine: str) -> None:
    result = subprocess.run(_serve(_config(tmp_path, busy_port, engine)), capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tokenguard: cannot listen on 127.0.0.1:{busy_port}: port {busy_port} is already in use (another "
        "tokenguard, or `make run`?); stop what uses it, or choose another address with --listen HOST:PORT "
        "(server.listen)"]
    assert "Connection in use" not in result.stderr and "RuntimeError" not in result.stderr


def test_the_listen_flag_is_checked_too(tmp_path: Path, busy_port: int) -> None:
    result = subprocess.run(_serve(_config(tmp_path, free_port()), "--listen", f"127.0.0.1:{busy_port}"),
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and f"port {busy_port} is already in use" in result.stderr


def _dead_pid() -> int:
    """A pid no process has (the kernel's pid range is far smaller than this on every Linux default)."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_the_metrics_directory_is_removed_at_exit_and_stale_ones_at_start(tmp_path: Path, engine: str) -> None:
    port = free_port()
    config = _config(tmp_path, port, engine)
    state = tmp_path / "state"
    stale, live = state / f"metrics-{_dead_pid()}", state / f"metrics-{os.getpid()}"
    for directory in (stale, live):
        directory.mkdir(parents=True)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(_serve(config), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        own = state / f"metrics-{server.pid}"
        wait_for(lambda: _answers(port), f"tokenguard ({engine}) on port {port}")
        assert own.is_dir() and not stale.exists()
        assert live.is_dir()  # a running server's directory is not touched
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    assert not own.exists(), (tmp_path / "serve.log").read_text()[-2000:]
    assert sorted(p.name for p in state.glob("metrics-*")) == [live.name]


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
