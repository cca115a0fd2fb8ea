"""check-config, serve and conformance hand over to their modules; a missing module is one clear line."""

from __future__ import annotations

import json
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
    assert result.code == 2 and "Traceback" not in result.err  # could not run: what --help says for a file
    assert result.err.strip() == f"{tmp_path / 'missing.toml'}: file not found"


def test_check_config_reports_every_problem_at_once(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = 8080\nworkers = 0\n[token]\nalgs = ["HS256"]\n[bogus]\n'
                   '[[route]]\nbinding = "nope"\n')
    result = run("check-config", str(bad))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"{bad}: bogus: unknown section", f"{bad}: server.listen: must be a string, not int",
        f"{bad}: server.workers: must be at least 1", f"{bad}: token.algs: HS256 is not an asymmetric JWS alg",
        f"{bad}: route[0].binding: must be one of dpop, mtls, bound, any"]
    as_json = run("check-config", str(bad), "--json")
    assert as_json.code == 1 and as_json.err == ""
    report = json.loads(as_json.out)
    assert report["ok"] is False and report["file"] == str(bad)
    assert [p["key"] for p in report["problems"]] == ["bogus", "server.listen", "server.workers", "token.algs",
                                                      "route[0].binding"]
    assert all(p["source"] == str(bad) and p["problem"] for p in report["problems"])


@pytest.mark.parametrize(("name", "code", "problem"), [
    ("good.toml", 0, None), ("missing.toml", 2, "file not found"), (".", 2, "is a directory, not a file"),
    ("invalid.toml", 1, "not valid TOML"),
])
def test_check_config_json_and_exit_codes(run: Run, tmp_path: Path, name: str, code: int,
                                          problem: str | None) -> None:
    (tmp_path / "good.toml").write_text('[server]\nlisten = "127.0.0.1:8080"\n')
    (tmp_path / "invalid.toml").write_text("[server\n")
    target = tmp_path / name
    result = run("check-config", str(target), "--json")
    report = json.loads(result.out)
    assert result.code == code and report["ok"] is (problem is None)
    if problem is not None:
        assert problem in report["problems"][0]["problem"] and report["problems"][0]["key"] is None


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
