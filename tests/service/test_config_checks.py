"""A config is checked as start-up would use it (issue 10, item 6): ``check-config`` and ``serve`` report
every problem at once -- values, this host (state directory, secret files), the command line -- and a
config that validates but would kill every worker is refused by ``serve`` with its reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokenguard.serving.reload import load_checked, redacted
from tokenguard.settings import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def tokenguard(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI with no TOKENGUARD_* variables from the caller's environment."""
    return subprocess.run([sys.executable, "-m", "tokenguard", *args], capture_output=True, text=True,  # noqa: S603
                          timeout=timeout, cwd=REPO, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokenguard.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path}/state"\n' + text)
    return path


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('listen = "127.0.0.1:99999"', "server.listen", "port 99999 is out of range"),
    ('log_level = "loud"', "server.log_level", "must be one of debug"),
])
def test_check_config_refuses_what_would_fail_at_start(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "tokenguard.toml"
    path.write_text(f"[server]\n{text}\n")
    done = tokenguard("check-config", str(path), home=tmp_path)
    assert done.returncode == 1
    assert f"{path}: {key}: {problem}" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_value_problem_at_once_and_no_false_one(tmp_path: Path) -> None:
    """A bad key in [token] must not make [token]'s audience look missing."""
    path = write(tmp_path, """log_level = "loud"
listen = "127.0.0.1:0"
[token]
audience = "https://api.test"
leeway = -1
key_wait = 11
jwks_ttl = 600
jwks_max_stale = 60
[[issuer]]
issuer = "not a url"
[[route]]
scopes = "read write"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    keys = [p.key for p in caught.value.problems]
    assert keys == ["server.listen", "server.log_level", "token.leeway", "token.jwks_max_stale", "token.key_wait",
                    "issuer[0].issuer", "route[0].scopes"]


def test_host_problems_are_reported_together(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    path = tmp_path / "tokenguard.toml"
    path.write_text(f"""[server]
state_dir = "{blocker}/state"
[dpop]
nonce_secret_file = "{tmp_path}/absent"
[replay]
store = "memory"
""")
    done = tokenguard("check-config", str(path), home=tmp_path)
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        f"{path}: server.state_dir: {blocker} is not a directory",
        f"{path}: dpop.nonce_secret_file: cannot read {tmp_path}/absent: No such file or directory",
    ]
    with pytest.raises(ConfigError) as caught:  # a reload knows its worker count: the memory store too
        load_checked(str(path), workers=2)
    assert [p.key for p in caught.value.problems] == ["server.state_dir", "dpop.nonce_secret_file", "replay.store"]


def test_a_good_config_passes(tmp_path: Path) -> None:
    path = write(tmp_path, '[token]\naudience = "https://api.test"\n[[issuer]]\nissuer = "https://as.test"\n')
    done = tokenguard("check-config", str(path), home=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"{path}: ok"
    assert not (tmp_path / "state").exists()  # checking creates nothing


@pytest.mark.parametrize(("args", "problem"), [
    (["--listen", "127.0.0.1:99999"], "--listen: port 99999 is out of range (1-65535)"),
    (["--listen", "localhost"], "--listen: must be HOST:PORT or unix:PATH"),
    (["--workers", "0"], "--workers: must be at least 1"),
])
def test_serve_refuses_a_bad_command_line_without_a_traceback(tmp_path: Path, args: list[str], problem: str) -> None:
    done = tokenguard("serve", "--config", str(write(tmp_path, "")), *args, home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"tokenguard: {problem}"


def test_a_config_whose_workers_could_not_start_is_refused_with_the_cause(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """It validates, but building the service fails (nothing in today's stores does: the embedded store heals a
    damaged directory, Redis fails closed per request; the probe guards against what nobody foresaw): the
    throwaway child says why, before any worker would start."""
    from tokenguard.serving import reload
    from tokenguard.settings import load_config, wiring

    config = load_config(write(tmp_path, ""), env={})

    def broken(*args: object, **kwargs: object) -> None:
        raise FileExistsError(17, "File exists")

    assert reload.probe(config) is None
    monkeypatch.setattr(wiring, "build_service", broken)  # the forked child inherits the patch
    problem = reload.probe(config)
    assert problem is not None, "the probe did not notice"
    assert problem.startswith(f"{config.source}: cannot start workers: FileExistsError"), problem
    assert "Traceback" not in problem


def test_credentials_never_reach_a_log_line() -> None:
    assert redacted("Error connecting to redis://user:s3cret@cache:6379/0 and rediss://:pw@x") == \
        "Error connecting to redis://***@cache:6379/0 and rediss://***@x"


def test_the_last_good_copy_of_a_config_is_private(tmp_path: Path) -> None:
    """Issue 10 item 7: a 0600 config holding an inline nonce secret is never copied world-readable, when an
    engine's workers read the accepted copy (at start and after every accepted reload)."""
    import os

    from tokenguard.serving.reload import ConfigGuard
    from tokenguard.settings import load_config

    secret = 'nonce_secret = "a-secret-of-at-least-16-bytes"'
    path = write(tmp_path, f"[dpop]\n{secret}\n")
    path.chmod(0o600)
    last_good = tmp_path / "state" / "last-good-config.toml"
    umask = os.umask(0o022)
    try:
        guard = ConfigGuard(str(path), 2, load_config(path, env={}), last_good=last_good)
        assert secret in last_good.read_text() and last_good.stat().st_mode & 0o777 == 0o600
        path.write_text(path.read_text() + '[[route]]\npath = "/v2*"\n')
        guard.reload()
    finally:
        os.umask(umask)
    assert "/v2*" in last_good.read_text() and last_good.stat().st_mode & 0o777 == 0o600
