"""The commands of docs/conformance.md, run as documented, give 0 failures (issue 13 §2).

Every ``sh`` block preceded by ``<!-- doc-test: NAME -->`` is executed: the ``tokenguard`` commands
for real (as subprocesses of this interpreter's ``python -m tokenguard``), the environment steps
(``make run``, starting the server) by the integration harness with the shipped configs. Only the
machine-specific parts are translated: fixed ports become free ones and ``.run/…`` paths become this
test's files. A command the interpreter does not know fails the test, so the guide and the test
cannot drift apart.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import harness  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "conformance.md"
BLOCK = re.compile(r"<!-- doc-test: (?P<name>[\w-]+) -->\s*```sh\n(?P<body>.*?)```", re.S)


def blocks() -> dict[str, list[str]]:
    """Documented command lines per block: continuations joined, comments dropped."""
    out: dict[str, list[str]] = {}
    for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8")):
        joined = m.group("body").replace("\\\n", " ")
        out[m.group("name")] = [" ".join(line.split()) for line in joined.splitlines()
                                if line.strip() and not line.strip().startswith("#")]
    return out


@dataclass
class Machine:
    """What this test has running, and how the guide's fixed addresses map onto it."""

    tmp: Path
    subst: dict[str, str] = field(default_factory=dict)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def started(self, proc: harness.ManagedProcess) -> None:
        self.cleanup.append(proc.stop)

    def translate(self, text: str) -> str:
        for old, new in self.subst.items():
            text = text.replace(old, new)
        return text

    def tokenguard(self, args: list[str], *, stdout: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "tokenguard", *args], cwd=self.tmp, capture_output=True,
                                text=True, timeout=900)
        if stdout is not None:
            stdout.write_text(self.translate(result.stdout))
        return result

    def stop(self) -> None:
        for stop in reversed(self.cleanup):
            stop()


def _conformance_run(m: Machine, line: str) -> None:
    """`tokenguard conformance …` as documented (+ --json to count): exit 0 and 0 failures at any level."""
    args = shlex.split(m.translate(line))[1:]
    result = m.tokenguard([*args, "--json"])
    assert result.returncode == 0, f"{line}\nexit {result.returncode}\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    failed = [f"{r['id']} [{r['level']}] {r['got']}: {r['reason']}"
              for r in report["results"] if r["outcome"] == "fail"]
    assert not failed, "\n".join(failed)
    assert report["summary"]["total"]["pass"] > 50


def _serve(m: Machine, line: str) -> None:
    """`tokenguard serve --config FILE`: the real service (gunicorn), on the translated port."""
    config = m.tmp / shlex.split(line)[-1]
    port = int(m.subst["127.0.0.1:8080"].rsplit(":", 1)[1])
    m.started(harness.start_tokenguard(config, port, m.tmp / "logs",
                                       env={"TOKENGUARD_SERVER_STATE_DIR": str(m.tmp / "state")}))


def _init(m: Machine, line: str) -> None:
    """`tokenguard conformance init > FILE`, run for real; the file gets this machine's ports."""
    command, _, target = line.partition(">")
    result = m.tokenguard(shlex.split(command)[1:], stdout=m.tmp / target.strip())
    assert result.returncode == 0, result.stderr


def _make_run(m: Machine, line: str) -> None:
    """`make run` as far as the suite needs it: the shipped nginx config in front of tokenguard's
    port (TLS with a test CA) and idp_mock with its demo clients behind the shipped mTLS alias."""
    tls = harness.make_tls_material(m.tmp / "tls")
    ports = harness.NginxPorts(listen=harness.free_port(), verifier=int(m.subst["127.0.0.1:8080"].rsplit(":")[1]),
                               upstream=harness.free_port(), idp_listen=harness.free_port(), idp=harness.free_port())
    (m.tmp / "idp.toml").write_text(f'mtls_base = "https://localhost:{ports.idp_listen}"\n')
    issuer = f"http://127.0.0.1:{ports.idp}"
    harness.settle_replay_store(m.tmp / "idp")  # not about the reset guard (test_replay_faults is)
    m.started(harness.start_process(
        [sys.executable, "-m", "idp_mock", "serve", "--config", str(m.tmp / "idp.toml"), "--port", str(ports.idp),
         "--issuer", issuer, "--state-dir", str(m.tmp / "idp")],
        name=f"idp-mock-{ports.idp}", log_dir=m.tmp / "logs", ready_url=f"{issuer}/healthz", cwd=ROOT))
    upstream = harness.serve_in_thread(harness.EchoHandler)
    m.cleanup.append(upstream.close)
    m.subst.update({"127.0.0.1:8000": f"127.0.0.1:{ports.listen}", "localhost:8000": f"localhost:{ports.listen}",
                    "127.0.0.1:9000": f"127.0.0.1:{ports.idp}", ".run/nginx/conf/tls/server.crt": str(tls.ca_path),
                    ".run/idp/demo/": f"{m.tmp / 'idp' / 'demo'}/"})
    ports = harness.NginxPorts(listen=ports.listen, verifier=ports.verifier, upstream=upstream.port,
                               idp_listen=ports.idp_listen, idp=ports.idp)
    m.started(harness.start_nginx(m.tmp / "nginx", ports, tls))


def _kill_demo_verifier(m: Machine, line: str) -> None:
    """`kill <make run's tokenguard>`: there is none here; the next step starts the suite's own."""


STEPS: list[tuple[str, Callable[[Machine, str], None]]] = [
    ("tokenguard conformance init", _init),
    ("tokenguard conformance ", _conformance_run),
    ("tokenguard serve ", _serve),
    ("make run", _make_run),
    ("kill $(python3 -c", _kill_demo_verifier),
]


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx): the guide's commands need it")
    m = Machine(tmp_path, {"127.0.0.1:8080": f"127.0.0.1:{harness.free_port()}",
                           "127.0.0.1:9400": f"127.0.0.1:{harness.free_port()}"})
    yield m
    m.stop()


def test_the_guide_marks_the_blocks_this_test_runs() -> None:
    assert set(blocks()) == {"rs-auth-request", "rs-direct", "as-idp-mock"}


@pytest.mark.parametrize("name", ["rs-auth-request", "rs-direct", "as-idp-mock"])
def test_documented_commands_give_no_failures(machine: Machine, name: str) -> None:
    lines = blocks()[name]
    if name == "rs-direct":  # the block reuses conformance.toml from §1 of the guide
        _init(machine, "tokenguard conformance init > conformance.toml")
    ran = 0
    for line in lines:
        step = next((fn for prefix, fn in STEPS if line.startswith(prefix)), None)
        assert step is not None, f"docs/conformance.md has a command this test cannot run: {line!r}"
        step(machine, line)
        ran += step is _conformance_run
    assert ran == 1
