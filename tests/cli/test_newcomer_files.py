"""Issue 13 §4.5-§4.6: the files a newcomer reads or installs say what the code does.

The sample config is valid and lists every key with its real default; the systemd unit passes
``systemd-analyze verify``; the README's CLI table names every option the issue found missing; the
LICENSE is the Apache-2.0 text pyproject names; the proxy config's comment states the real default.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tokenguard import __version__
from tokenguard.settings import SECTIONS, load_config
from tokenguard.settings.schema import IssuerSettings, RouteSettings, ServerSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "tokenguard.example.toml"
UNIT = REPO / "deploy" / "systemd" / "tokenguard.service"
_KEY_LINE = re.compile(r"^(#\s*)?([a-z_]+)\s*=\s*(.*)$")
_HEADER = re.compile(r"^\[\[?([a-z]+)\]\]?")


def _documented(text: str) -> dict[str, list[tuple[str, bool, str]]]:
    """Per section: (key, commented out, value text) for every ``key = value`` line, active or ``# key =``."""
    sections: dict[str, list[tuple[str, bool, str]]] = {}
    current = ""
    for line in text.splitlines():
        if (header := _HEADER.match(line)) is not None:
            current = header.group(1)
            continue
        if current and (match := _KEY_LINE.match(line)) is not None:
            sections.setdefault(current, []).append((match.group(2), bool(match.group(1)), match.group(3)))
    return sections


def _classes() -> dict[str, type]:
    return {**SECTIONS, "issuer": IssuerSettings, "route": RouteSettings}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def test_the_sample_config_is_valid() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.token.audience == ("https://api.example.com",)
    assert [route.name for route in config.policy.routes] == ["api", "partners"]


@pytest.mark.parametrize("section", sorted(_classes()))
def test_the_sample_config_documents_every_key_with_its_default(section: str) -> None:
    cls = _classes()[section]
    lines = _documented(EXAMPLE.read_text()).get(section, [])
    keys = {f.name for f in dataclasses.fields(cls)}
    assert keys - {key for key, _, _ in lines} == set(), f"[{section}] keys missing from {EXAMPLE.name}"
    assert {key for key, _, _ in lines} - keys == set(), f"[{section}] lines for keys that do not exist"
    defaults = cls()
    for key, commented, value in lines:
        if commented:  # a commented-out line shows the default
            shown = tomllib.loads(f"v = {value}")["v"]
            assert shown == _plain(getattr(defaults, key)), f"[{section}] {key}: {shown!r} is not the default"


#: README rows whose default is a description, not a value: the schema's empty default stands for one
#: computed at run time or for a required value. The test checks that these defaults really are empty.
_DESCRIBED_DEFAULTS = {"server.state_dir", "token.audience", "issuer[].issuer", "issuer[].jwks_uri",
                       "issuer[].audience", "issuer[].introspection_endpoint", "dpop.nonce_secret", "route[].name"}
_README_ROW = re.compile(r"^\| `([a-z_]+(?:\[\])?\.[a-z_]+)` \| (.+?) \| .+ \|$")


def _readme_configuration_rows() -> dict[str, str]:
    """README "Configuration" table: full key (``route[].path``) -> its default cell, one row per key."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| key | default | meaning |"):readme.index("## Replay store")]
    rows: dict[str, str] = {}
    for line in table.strip().splitlines()[2:]:
        match = _README_ROW.match(line)
        assert match is not None, f"not a '| `section.key` | default | meaning |' row: {line[:80]}"
        assert match.group(1) not in rows, f"{match.group(1)} has two rows"
        rows[match.group(1)] = match.group(2)
    return rows


def _shown_default(cell: str) -> Any:
    """The value a default cell starts with: TOML (`60`, `true`, `[]`, `""`) or a bare string (`uvicorn`)."""
    literal = re.match(r"^`([^`]*)`", cell)
    assert literal is not None, f"the default {cell!r} does not start with a `value`"
    try:
        return tomllib.loads(f"v = {literal.group(1)}")["v"]
    except tomllib.TOMLDecodeError:
        return literal.group(1)


def test_the_readme_configuration_table_lists_every_key_with_its_default() -> None:
    rows = _readme_configuration_rows()
    expected: dict[str, Any] = {}
    for section, cls in _classes().items():
        prefix = f"{section}[]." if section in ("issuer", "route") else f"{section}."
        defaults = cls()
        expected.update({prefix + f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls)})
    assert sorted(set(expected) - set(rows)) == [], "keys missing from the README's configuration table"
    assert sorted(set(rows) - set(expected)) == [], "README rows for keys that do not exist"
    for key, cell in rows.items():
        if key in _DESCRIBED_DEFAULTS:
            assert expected[key] in ("", ()), f"{key}: the README describes its default, but it is {expected[key]!r}"
        else:
            shown = _shown_default(cell)
            assert shown == _plain(expected[key]), f"{key}: README says {cell}, default is {expected[key]!r}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here (Debian: apt-get install systemd)")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's console script, as installed.
    tokenguard = Path(sys.executable).with_name("tokenguard")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/tokenguard/bin/tokenguard", str(tokenguard)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=120)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_the_systemd_unit_runs_the_documented_command_and_state_dir() -> None:
    unit = UNIT.read_text()
    assert "ExecStart=/opt/tokenguard/bin/tokenguard serve --config /etc/tokenguard/tokenguard.toml" in unit
    assert "StateDirectory=tokenguard" in unit and "TOKENGUARD_SERVER_STATE_DIR=/var/lib/tokenguard" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # SIGHUP: reload without dropping requests


def test_the_readme_cli_table_is_complete() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| command | does |"):readme.index("`--token` takes the token")]
    rows = {line.split("`")[1].split()[1]: line for line in table.splitlines() if line.startswith("| `tokenguard")}
    for verb, options in {"serve": ["--listen", "--threads", "--workers", "--dev"],
                          "explain": ["--curl", "--json", "--jwks", "--cert"],
                          "keygen": ["--from-pem", "Ed25519"],
                          "call": ["--cacert", "--json", "--auth-request", "--proof"],
                          "check-config": ["--json"]}.items():
        assert verb in rows, f"no README row for tokenguard {verb}"
        assert all(option in rows[verb] for option in options), (verb, rows[verb])


def test_license_is_the_apache_2_text_pyproject_names() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == {"text": "Apache-2.0"}


def test_changelog_names_the_current_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and f"## [{__version__}]" in text


def test_the_nginx_comment_states_the_real_trusted_proxies_default() -> None:
    text = (REPO / "deploy" / "nginx" / "tokenguard.conf").read_text()
    shown = re.search(r"trusted_proxies = (\[[^\]]*\])", text)
    assert shown is not None
    assert tomllib.loads(f"v = {shown.group(1)}")["v"] == list(ServerSettings().trusted_proxies)


def test_idp_mock_readme_keeps_secrets_off_the_command_line() -> None:
    text = (REPO / "idp_mock" / "README.md").read_text()
    assert not re.search(r"--client-secret[ =]\S", text)
    assert "--client-secret-file" in text


@pytest.mark.parametrize("command", [["idp_mock"], ["tokenguard"]])
def test_version_flags(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command, "--version"], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    name = "idp-mock" if command == ["idp_mock"] else "tokenguard"
    assert result.returncode == 0 and result.stdout.strip() == f"{name} {__version__}", result.stderr
