"""The pre-flight stops a run against a verifier that is not set up for the suite, with one message
that says what to configure (issue 13), and exit status 3 — for tokenguard (reason codes) and for a
foreign verifier judged by status codes and by what the suite's issuer saw."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tokenguard.conformance import report
from tokenguard.conformance.issuer import MiniIssuer
from tokenguard.conformance.minting import Fixtures
from tokenguard.conformance.preflight import PreflightFailed
from tokenguard.conformance.runner import main

from .broken_verifier import BrokenVerifier
from .conftest import free_port, run_suite


class WithoutReasons:
    """A foreign verifier: the broken verifier with its X-Auth-Error reason codes removed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def strip(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [(k, v) for k, v in headers if k.lower() != "x-auth-error"], *exc)
        return self.app(environ, strip)


def _failed(*argv: str) -> str:
    with pytest.raises(PreflightFailed) as info:
        run_suite(*argv)
    from tokenguard.conformance.preflight import render
    return render(info.value.findings)


def test_foreign_verifier_trusting_another_issuer(serve: Callable[[Any], str]) -> None:
    """No reason codes: the verdict comes from the suite's issuer never being asked for keys."""
    other = MiniIssuer(Fixtures("http://127.0.0.1:1", "https://api.test"), f"http://127.0.0.1:{free_port()}",
                       "conformance", "conformance-secret")
    with other:
        base = serve(WithoutReasons(BrokenVerifier(issuer=other.issuer)))
        issuer = f"http://127.0.0.1:{free_port()}"
        message = _failed("--verifier", f"{base}/auth", "--issuer", issuer)
    assert f"without ever asking the suite's issuer {issuer}" in message
    assert f'issuer = "{issuer}"' in message  # the TOML that fixes it


def test_wrong_algs_and_no_route(serve: Callable[[Any], str]) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    base = serve(BrokenVerifier(issuer=issuer))
    message = _failed("--verifier", f"{base}/auth", "--issuer", issuer, "--algs", "ES256")
    assert 'DPoP algs are "ES256 PS256 EdDSA", the suite was told "ES256"' in message
    assert 'algs = ["ES256"]' in message
    message = _failed("--verifier", f"{base}/auth", "--issuer", issuer, "--resource", "https://api.test/elsewhere")
    assert "no route for GET https://api.test/elsewhere" in message and 'path = "/elsewhere"' in message


def test_unreachable_verifier_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code = main(["--verifier", f"http://127.0.0.1:{port}/auth", "--issuer", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == report.EXIT_SETUP == 3
    assert f"cannot reach the verifier at http://127.0.0.1:{port}/auth" in err and "No case ran" in err


def test_tokenguard_not_trusting_the_suite(serve: Callable[[Any], str], tmp_path: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The `make run` situation of issue 13: tokenguard trusts another issuer, has other algs."""
    from tokenguard.settings import load_config
    from tokenguard.settings.wiring import build_service
    from tokenguard.web.app import create_app

    assert main(["init", "--issuer", "http://127.0.0.1:9", "--algs", "ES256 ES384 PS256 RS256 EdDSA"]) == 0
    (tmp_path / "tg.toml").write_text(capsys.readouterr().out)
    config = load_config(tmp_path / "tg.toml", env={"TOKENGUARD_SERVER_STATE_DIR": str(tmp_path)})
    base = serve(create_app(build_service(config)))
    issuer = f"http://127.0.0.1:{free_port()}"
    code = main(["--verifier", f"{base}/auth", "--issuer", issuer])
    err = capsys.readouterr().err
    assert code == 3
    assert "does not trust the suite's issuer" in err and "token_unknown_issuer" in err
    assert "DPoP algs are" in err
    assert "conformance-secret" in err  # the suite's public fixture value, never an operator's secret


def test_no_preflight_runs_the_cases(serve: Callable[[Any], str]) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"
    base = serve(BrokenVerifier(issuer=issuer))
    results = run_suite("--verifier", f"{base}/auth", "--issuer", issuer, "--algs", "ES256", "--no-preflight",
                        "--only", "HDR-RS-01")
    assert [r.outcome for r in results] == ["fail"]  # algs differ: the case itself says so


def test_unreachable_authorization_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/.well-known/oauth-authorization-server"
    assert main(["--as-metadata", url, "--as-client", "confidential:c:s"]) == 3
    assert f"cannot fetch the AS metadata {url}" in capsys.readouterr().err


class RefusingAtFirst:
    """A verifier whose first DPoP answers are a refusal that passes by itself (tokenguard's new replay store
    in its first seconds; a key fetch in back-off looks the same with ``jwks_unavailable``)."""

    def __init__(self, app: Any, reason: str, times: int) -> None:
        self.app, self.reason, self.left = app, reason, times

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if "HTTP_DPOP" in environ and self.left > 0:
            self.left -= 1
            start_response("401 Unauthorized", [("WWW-Authenticate", 'DPoP error="invalid_dpop_proof"'),
                                                ("X-Auth-Error", self.reason), ("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)


@pytest.mark.parametrize("reason", ["replay_store_reset", "jwks_unavailable"])
def test_a_refusal_that_passes_by_itself_is_waited_out(serve: Callable[[Any], str], reason: str) -> None:
    """`make run`'s order (verifier first, then the suite) met a brand-new replay store or a key fetch still in
    back-off from before the suite's issuer listened: the pre-flight stopped the run (exit 3) although
    waiting a few seconds was all it took."""
    issuer = f"http://127.0.0.1:{free_port()}"
    app = RefusingAtFirst(BrokenVerifier(issuer=issuer), reason, times=2)
    base = serve(app)
    results = run_suite("--verifier", f"{base}/auth", "--issuer", issuer, "--algs", "ES256 PS256 EdDSA",
                        "--only", "HDR-RS-01")
    assert app.left == 0 and [r.id for r in results] == ["HDR-RS-01"]
