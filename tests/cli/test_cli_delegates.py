"""check-config, serve and conformance hand over to their modules; a missing module is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenguard import cli

from .conftest import Run


def test_check_config_ok_and_error(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "tg.toml"
    good.write_text('[server]\nlisten = "127.0.0.1:8080"\n')
    result = run("check-config", str(good))
    assert (result.code, result.out.strip()) == (0, f"{good}: ok")
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = 8080\n')
    result = run("check-config", str(bad))
    assert result.code == 1 and result.err.startswith(f"{bad}: ") and "listen" in result.err
    assert len(result.err.strip().splitlines()) == 1
    result = run("check-config", str(tmp_path / "missing.toml"))
    assert result.code == 1 and "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


def test_missing_delegate_module_is_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.DELEGATED, "serve", "tokenguard._no_such_server")
    result = run("serve", "--config", "x.toml")
    assert result.code == 2
    assert result.err.strip().startswith("tokenguard serve: error: 'tokenguard serve' is not available")
    assert len(result.err.strip().splitlines()) == 1


def test_top_level_help_does_not_import_delegates(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.DELEGATED, "serve", "tokenguard._no_such_server")
    result = run("--help")
    assert result.code == 0 and "serve" in result.out


def test_unexpected_exception_is_one_line(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "generate_jwk", boom)
    monkeypatch.delenv("TOKENGUARD_DEBUG", raising=False)
    result = run("keygen")
    assert result.code == 2 and "unexpected error: RuntimeError: boom" in result.err
    assert "Traceback" not in result.err
