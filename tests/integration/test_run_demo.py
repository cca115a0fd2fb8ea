"""`make run` (scripts/run_demo.py) for real, on free ports in a temporary run directory (issue 13 §4.1).

Reproduced before: a second `make run` while the demo ran stopped it, then failed on the ports it had
just freed (exit 1, nothing left running); the summary did not list 8001 and 9443; the replay step had
no command to repeat it; headings carried escape codes into pipes. Here: run, run again while it runs,
run after its verifier was killed, stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import harness
import pytest
from support import free_port, port_open, wait_for

pytestmark = pytest.mark.integration
SCRIPT = harness.REPO / "scripts" / "run_demo.py"


def _demo(run_dir: Path, ports: dict[str, int], *argv: str) -> subprocess.CompletedProcess[str]:
    spec = ",".join(f"{name}={port}" for name, port in ports.items())
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TOKENGUARD_DEMO_AUDIENCE")}
    return subprocess.run([sys.executable, str(SCRIPT), "--run-dir", str(run_dir), "--ports", spec, *argv],
                          capture_output=True, text=True, timeout=300, cwd=harness.REPO, env=env)


def test_make_run_again_while_it_runs_and_after_a_crash(nginx_binary: str, tmp_path: Path) -> None:
    ports = {"idp": free_port(), "verifier": free_port(), "proxy": free_port(), "upstream": free_port(),
             "idp_mtls": free_port()}
    run_dir = tmp_path / "run"
    try:
        first = _demo(run_dir, ports)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        out = first.stdout
        assert "\033" not in out  # not a terminal: no escape codes (demo.py's steps included)
        for port in ports.values():
            assert f"127.0.0.1:{port} " in out, f"port {port} not listed"
        assert f"--proof @{run_dir / 'demo' / 'used-proof.txt'}" in out  # the command that repeats the replay
        assert "OK  refused: X-Auth-Error: dpop_replay" in out and "UNEXPECTED" not in out

        again = _demo(run_dir, ports)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
        assert "The demo is already running" in again.stdout and "OK  allowed" in again.stdout
        assert "stopped" not in again.stdout and "still in use" not in again.stderr

        pids = json.loads((run_dir / "pids.json").read_text())
        os.kill(pids["tokenguard"], signal.SIGKILL)  # the verifier's master dies; its workers linger
        after_crash = _demo(run_dir, ports)
        assert after_crash.returncode == 0, after_crash.stdout[-3000:] + after_crash.stderr[-2000:]
        assert "Stopping what is left of an earlier `make run`" in after_crash.stdout
        assert "OK  allowed" in after_crash.stdout
    finally:
        stopped = _demo(run_dir, ports, "--stop")
    assert stopped.returncode == 0
    wait_for(lambda: not any(port_open(port) for port in ports.values()), "every demo port to be free")
