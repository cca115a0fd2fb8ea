"""``tokenguard explain`` on every reason code the verifier can give, held to what ``/auth`` answers.

The list of reason codes is read from the code (every literal handed to an RFC error, an outage or a
"no credentials" outcome); a code without a case here fails :func:`test_every_reason_code_has_a_case`.
Each case runs ``explain --json`` and asserts that the failing check is named, with what was expected and
what was got, and that the decision is exactly the real ``/auth``'s (same config, Flask test client):
status, ``WWW-Authenticate``, ``X-Auth-Error``, and whether a ``DPoP-Nonce`` is handed out.
"""

from __future__ import annotations

import ast
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from support import free_port, settle_replay_store

from tokenguard.core.replay import open_replay_store

from .conftest import Result, Run
from .explain_world import AUD, CONFIG, DROP, NONCE_SECRET, Issuer, World, b64u_json, jkt, make_certificates, running

REPO = Path(__file__).resolve().parents[2]
#: Codes no /auth request can produce, and why.
UNREACHABLE = {
    "bad_request_url": "only Target.parse of a configured public_url raises it, and the config loader validates "
                       "those URLs first",
    "replay_store_full": "explain never records a jti (seen() is read-only), so it cannot find the store full; "
                         "tests/integration/test_replay_faults.py fills one",
}


# -- the reason codes, from the code --------------------------------------------------------------------


def _error_calls() -> set[str]:
    """Names whose first string argument is a reason code: the RFC error classes and the outcome helpers."""
    from tokenguard.core import errors

    names = {name for name, value in vars(errors).items() if isinstance(value, type)
             and issubclass(value, errors.OAuthError | errors.VerifierUnavailable)}
    return names | {"_use_nonce", "_NoCredentials", "_unavailable", "unavailable", "refused"}


def reason_codes_in_code() -> set[str]:
    """Every reason-code literal under tokenguard/core, tokenguard/web and tokenguard/outbound.py."""
    calls = _error_calls()
    files = [*sorted((REPO / "tokenguard" / "core").rglob("*.py")),
             *sorted((REPO / "tokenguard" / "web").rglob("*.py")), REPO / "tokenguard" / "outbound.py"]
    codes: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "reason_code"
                                                    for t in node.targets):
                codes.add(ast.literal_eval(node.value))
            if isinstance(node, ast.FunctionDef):  # def f(..., reason: str = "code")
                arguments = [*node.args.args, *node.args.kwonlyargs]
                defaults = [*node.args.defaults, *node.args.kw_defaults]
                named = dict(zip([a.arg for a in arguments][::-1], defaults[::-1], strict=False))
                default = named.get("reason")
                if isinstance(default, ast.Constant) and isinstance(default.value, str):
                    codes.add(default.value)
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            strings += [k.value.value for k in node.keywords if k.arg == "reason"
                        and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)]
            if name in calls:
                codes.update(s for s in strings[:3] if s.isidentifier() and s.islower() and "_" in s)
    return codes


# -- the cases ------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One request, as flags for explain and as headers for /auth, and the check that must fail."""

    step: str
    method: str = "GET"
    url: str = f"{AUD}/dpop/orders"
    authorization: list[str] = field(default_factory=list)
    dpop: list[str] = field(default_factory=list)
    cert: str | None = None  # a name in World.cert_files
    config: str | None = None  # another config in the world
    expected: str = ""  # substrings the failing check's expected / got must hold
    got: str = ""


def _dpop(world: World, path: str = "/dpop/orders", token: str | None = None, claims: dict[str, Any] | None = None,
          header: dict[str, Any] | None = None, **options: Any) -> tuple[list[str], list[str]]:
    token = token or world.dpop_token()
    return [f"DPoP {token}"], [world.proof(f"{AUD}{path}", token, claims, header, **options)]


def _case(step: str, parts: tuple[list[str], list[str]], **options: Any) -> Case:
    return Case(step, authorization=parts[0], dpop=parts[1], **options)


def _cases(world: World) -> dict[str, Callable[[], Case]]:
    now = int(time.time())
    bearer = world.token()
    return {
        "no_route": lambda: Case("route", url=f"{AUD}/nowhere", authorization=[f"Bearer {bearer}"],
                                 got="no route matches"),
        "no_credentials": lambda: Case("Authorization", got="no Authorization header"),
        "unsupported_scheme": lambda: Case("Authorization scheme", authorization=["Basic dXNlcjpwdw=="],
                                           expected="Bearer or DPoP", got="Basic"),
        "multiple_authorization": lambda: Case("Authorization", authorization=[f"Bearer {bearer}"] * 2,
                                               got="2 fields"),
        "token_missing": lambda: Case("Authorization", authorization=["DPoP"], got="no token"),
        "token_too_large": lambda: Case("Authorization", authorization=[f"Bearer {'a' * 17000}"],
                                        got="17000 characters"),
        "multiple_token_methods": lambda: Case("one token, one place", url=f"{AUD}/any/x?access_token=AT",
                                               authorization=[f"Bearer {bearer}"], got="query"),
        "request_uri_too_large": lambda: Case("original request", url=f"{AUD}/any/{'a' * 9000}",
                                              authorization=[f"Bearer {bearer}"], got="too long"),
        "token_syntax": lambda: Case("Authorization", authorization=["Bearer a;b"], got="outside token68"),
        "token_malformed": lambda: Case("well-formed JWT", authorization=[
            f"Bearer {b64u_json({'alg': 'RS256'})}.bm90anNvbg.c2ln"]),
        "token_encrypted": lambda: Case("JWS, not JWE", authorization=[
            f"Bearer {b64u_json({'alg': 'RSA-OAEP', 'enc': 'A128GCM'})}.a.b.c.d"], got="5 segments"),
        "token_bad_alg": lambda: Case("alg", authorization=[f"Bearer {b64u_json({'alg': 'HS256', 'typ': 'at+jwt'})}"
                                                            f".{b64u_json({'iss': world.issuer.url})}.c2ln"],
                                      got="HS256"),
        "token_bad_typ": lambda: Case("typ", authorization=[f"Bearer {world.token(header={'typ': 'JWT'})}"],
                                      expected="at+jwt", got="JWT"),
        "token_crit": lambda: Case("crit", authorization=[f"Bearer {world.token(header={'crit': ['exp']})}"]),
        "token_unknown_issuer": lambda: Case("iss", authorization=[
            f"Bearer {world.token({'iss': 'https://evil.test'})}"], got="https://evil.test"),
        "token_unknown_kid": lambda: Case("signing key", authorization=[
            f"Bearer {world.token(header={'kid': 'as-9'})}"], expected="kid as-9"),
        "jwks_unavailable": lambda: Case("signing key", config="dead_issuer", authorization=[f"Bearer {bearer}"],
                                         got="no signing keys"),
        "token_bad_signature": lambda: Case("signature", authorization=[
            f"Bearer {world.token(key=world.attacker)}"], got="does not verify"),
        "token_missing_claim": lambda: Case("required claims", authorization=[
            f"Bearer {world.token({'jti': DROP})}"], got="missing jti"),
        "token_wrong_audience": lambda: Case("aud", authorization=[
            f"Bearer {world.token({'aud': 'https://other.test'})}"], expected=AUD, got="https://other.test"),
        "token_expired": lambda: Case("exp", authorization=[f"Bearer {world.token({'exp': now - 3600})}"],
                                      got="s ago"),
        "token_not_yet_valid": lambda: Case("nbf", authorization=[f"Bearer {world.token({'nbf': now + 3600})}"],
                                            got="in "),
        "token_inactive": lambda: Case("introspection", authorization=["Bearer opaque-unknown-token"],
                                       expected="active: true", got="active: false"),
        "introspection_unavailable": lambda: Case("introspection", config="dead_introspection",
                                                  authorization=["Bearer opaque-unknown-token"]),
        "binding_required": lambda: Case("route binding", authorization=[f"Bearer {bearer}"],
                                         expected="dpop accepts bearer"),
        "token_bad_cnf": lambda: Case("cnf", url=f"{AUD}/any/x",
                                      authorization=[f"Bearer {world.token({'cnf': {'jkt': 5}})}"]),
        "token_unknown_cnf": lambda: Case("cnf", url=f"{AUD}/any/x",
                                          authorization=[f"Bearer {world.token({'cnf': {'x5t': 'abc'}})}"]),
        "token_double_binding": lambda: Case("cnf", url=f"{AUD}/any/x", authorization=[
            f"Bearer {world.token({'cnf': {'jkt': 'a', 'x5t#S256': 'b'}})}"]),
        "token_not_dpop_bound": lambda: _case("scheme", _dpop(world, token=bearer), expected="Authorization: Bearer"),
        "dpop_with_bearer": lambda: Case("no DPoP proof", url=f"{AUD}/any/x", authorization=[f"Bearer {bearer}"],
                                         dpop=[world.proof(f"{AUD}/any/x", bearer)], got="1 DPoP header"),
        "dpop_token_as_bearer": lambda: Case("scheme", authorization=[f"Bearer {world.dpop_token()}"],
                                             expected="DPoP", got="Bearer"),
        "binding_not_allowed": lambda: _case("route binding", _dpop(world, "/mtls/x"), url=f"{AUD}/mtls/x",
                                             expected="mtls accepts dpop"),
        "dpop_proof_missing": lambda: Case("DPoP proof present", authorization=[f"DPoP {world.dpop_token()}"],
                                           got="0 DPoP header"),
        "dpop_multiple_proofs": lambda: Case("one DPoP header", authorization=[f"DPoP {(t := world.dpop_token())}"],
                                             dpop=[world.proof(f"{AUD}/dpop/orders", t)] * 2, got="2"),
        "dpop_malformed": lambda: Case("well-formed JWT", authorization=[f"DPoP {world.dpop_token()}"],
                                       dpop=["abc"], got="three-part"),
        "dpop_too_large": lambda: Case("proof syntax", authorization=[f"DPoP {world.dpop_token()}"],
                                       dpop=["a" * 9000], got="too large"),
        "dpop_missing_claim": lambda: _case("required claims", _dpop(world, claims={"htm": DROP}), got="missing htm"),
        "dpop_bad_typ": lambda: _case("typ", _dpop(world, header={"typ": "JWT"}), expected="dpop+jwt", got="JWT"),
        "dpop_bad_alg": lambda: _case("alg", _dpop(world, header={"alg": "ES512"}), got="ES512"),
        "dpop_crit": lambda: _case("crit", _dpop(world, header={"crit": ["htm"]})),
        "dpop_bad_jwk": lambda: _case("jwk", _dpop(world, header={"jwk": DROP}), got="(absent)"),
        "dpop_private_jwk": lambda: _case("jwk is public", _dpop(world, header={
            "jwk": world.k1.as_dict(private=True)}), got="private members d"),
        "dpop_alg_key_mismatch": lambda: _case("jwk fits alg", _dpop(world, header={"alg": "RS256"}),
                                               expected="RS256", got="kty EC"),
        "dpop_bad_signature": lambda: _case("signature", _dpop(world, sign_key=world.k2), got="does not verify"),
        "dpop_bad_jti": lambda: _case("jti", _dpop(world, claims={"jti": 5})),
        "dpop_htm_mismatch": lambda: _case("htm", _dpop(world, method="POST"), expected="GET", got="POST"),
        "dpop_bad_htu": lambda: _case("htu", _dpop(world, claims={"htu": "not a uri"}), got="not a uri"),
        "dpop_htu_mismatch": lambda: _case("htu", _dpop(world, claims={"htu": "http://api.test/dpop/orders"}),
                                           expected=f"{AUD}/dpop/orders", got="http://api.test/dpop/orders"),
        "dpop_nonce_missing": lambda: _case("nonce", _dpop(world, "/nonce/x"), url=f"{AUD}/nonce/x", got="(absent)"),
        "dpop_nonce_invalid": lambda: _case("nonce", _dpop(world, "/nonce/x", claims={"nonce": "stale"}),
                                            url=f"{AUD}/nonce/x", got="stale"),
        "dpop_bad_iat": lambda: _case("iat", _dpop(world, claims={"iat": "yesterday"}), got="yesterday"),
        "dpop_iat_future": lambda: _case("iat", _dpop(world, claims={"iat": now + 600}), got="in the future"),
        "dpop_iat_too_old": lambda: _case("iat", _dpop(world, claims={"iat": now - 600}), got="s old"),
        "dpop_bad_claim": lambda: _case("exp", _dpop(world, claims={"exp": "soon"}), got="soon"),
        "dpop_expired": lambda: _case("exp", _dpop(world, claims={"exp": now - 600})),
        "dpop_not_yet_valid": lambda: _case("nbf", _dpop(world, claims={"nbf": now + 600})),
        "dpop_ath_mismatch": lambda: _case("ath", _dpop(world, claims={"ath": "x" * 43}), got="x" * 43),
        "dpop_key_mismatch": lambda: _case("cnf.jkt", _dpop(world, key=world.k2), expected=jkt(world.k1),
                                           got=jkt(world.k2)),
        "replay_store_unavailable": lambda: _case("able to decide", _dpop(world), config="dead_replay",
                                                  got="redis replay store"),
        "replay_store_reset": lambda: _case("issued after the replay store's reset", _dpop(world),
                                            config="fresh_replay", expected="the store's memory began"),
        "mtls_token_as_dpop": lambda: _case("scheme", _dpop(world, "/mtls/x", token=world.mtls_token()),
                                            url=f"{AUD}/mtls/x", expected="Bearer", got="DPoP"),
        "cert_missing": lambda: Case("client certificate", url=f"{AUD}/mtls/x",
                                     authorization=[f"Bearer {world.mtls_token()}"], got="none presented"),
        "cert_mismatch": lambda: Case("cnf.x5t#S256", url=f"{AUD}/mtls/x", cert="cert2",
                                      authorization=[f"Bearer {world.mtls_token()}"]),
        "insufficient_scope": lambda: Case("scopes", url=f"{AUD}/scoped/x", authorization=[f"Bearer {bearer}"],
                                           expected="all of admin", got="read"),
        "claim_mismatch": lambda: Case("claim tier", url=f"{AUD}/any/x", expected='equals "gold"', got="silver",
                                       authorization=[f"Bearer {world.token({'tier': 'silver'})}"]),
    }


#: Codes a request to /auth reaches only through a broken proxy framing (a pasted sub-request) or a fault.
SPECIAL = {"dpop_replay", "internal_error", "cert_malformed", "bad_forwarded_proto", "bad_forwarded_host",
           "bad_forwarded_port", "bad_request_uri", "bad_forwarded_method", "underscore_header", "headers_too_large",
           "too_many_header_fields"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("explain")
    with running(Issuer()) as issuer:
        config = tmp / "tokenguard.toml"
        text = CONFIG.format(state=tmp / "state", aud=AUD, issuer=issuer.url, nonce=NONCE_SECRET)
        config.write_text(text)
        settle_replay_store(config=config)  # not about the reset guard (tests/core/test_replay_epoch.py is)
        cert1, cert2, files = make_certificates(tmp)
        world = World(issuer, config, cert1=cert1, cert2=cert2, cert_files=files)
        dead = free_port()
        (tmp / "dead_issuer.toml").write_text(text.replace(
            'introspection_client_id = "rs1"', f'jwks_uri = "http://127.0.0.1:{dead}/jwks"\n'
                                               'introspection_client_id = "rs1"'))
        (tmp / "dead_introspection.toml").write_text(text.replace(
            'introspection_client_id = "rs1"',
            f'introspection_client_id = "rs1"\nintrospection_endpoint = "http://127.0.0.1:{dead}/introspect"'))
        (tmp / "dead_replay.toml").write_text(text.replace('store = "embedded"',
                                                           f'store = "redis://127.0.0.1:{dead}/0"'))
        # A store whose memory began just now (its epoch an hour ahead, so that it stays "just now"):
        fresh = tmp / "fresh-state"
        (tmp / "fresh_replay.toml").write_text(text.replace(f'state_dir = "{tmp / "state"}"',
                                                            f'state_dir = "{fresh}"'))
        open_replay_store("embedded", fresh, clock=lambda: time.time() + 3600).close()
        yield world


def _config(world: World, name: str | None) -> Path:
    return world.config if name is None else world.config.parent / f"{name}.toml"


def explain(run: Run, config: Path, *argv: str) -> tuple[Result, dict[str, Any]]:
    result = run("explain", "--config", str(config), "--json", *argv)
    assert result.code in (0, 1), result.err
    return result, json.loads(result.out)


def _flags(world: World, case: Case) -> list[str]:
    argv = ["--method", case.method, "--url", case.url]
    for value in case.authorization:
        argv += ["--authorization", value]
    for value in case.dpop:
        argv += ["--dpop", value]
    if case.cert:
        argv += ["--cert", str(world.cert_files[case.cert])]
    return argv


def _auth_headers(world: World, case: Case) -> list[tuple[str, str]]:
    headers = [("Authorization", v) for v in case.authorization] + [("DPoP", v) for v in case.dpop]
    if case.cert:
        pem = world.cert_files[case.cert].read_text()
        headers.append(("X-SSL-Client-Cert", quote(pem, safe="")))
    return headers


def assert_same_answer(report: dict[str, Any], answer: Any) -> None:
    """explain's decision is /auth's: status, challenge, reason, and whether a nonce is handed out."""
    decision = report["decision"]
    headers = {name: value for name, value in decision["headers"]}
    assert decision["status"] == answer.status_code
    assert headers.get("X-Auth-Error") == answer.headers.get("X-Auth-Error")
    assert headers.get("WWW-Authenticate") == answer.headers.get("WWW-Authenticate")
    assert ("DPoP-Nonce" in headers) == ("DPoP-Nonce" in answer.headers)


def assert_failed_check(report: dict[str, Any], reason: str, step: str, expected: str = "", got: str = "") -> None:
    assert report["decision"]["reason"] == reason, report["checks"]
    failed = report["failed"]
    assert failed is not None and failed["ok"] is False
    assert failed["step"] == step, failed
    assert failed["section"] and failed["expected"] and failed["got"], failed
    assert expected in failed["expected"] and got in failed["got"], failed
    assert report["checks"][-1] == failed  # the failing check is the last one that ran


def test_every_reason_code_has_a_case(world: World) -> None:
    codes = reason_codes_in_code()
    assert len(codes) > 60, sorted(codes)  # the extraction itself works
    covered = set(_cases(world)) | SPECIAL
    assert codes - set(UNREACHABLE) - covered == set(), "reason codes without an explain test"
    assert covered - codes == set(), "explain tests for codes the verifier no longer gives"


@pytest.mark.parametrize("reason", sorted(set(reason_codes_in_code()) - set(UNREACHABLE) - SPECIAL))
def test_explain_names_the_failing_check_and_matches_auth(run: Run, world: World, reason: str) -> None:
    case = _cases(world)[reason]()
    config = _config(world, case.config)
    _, report = explain(run, config, *_flags(world, case))
    assert_failed_check(report, reason, case.step, case.expected, case.got)
    assert_same_answer(report, world.auth(case.method, case.url, _auth_headers(world, case), config))


def test_an_allowed_request_passes_every_check_and_consumes_nothing(run: Run, world: World) -> None:
    token = world.dpop_token()
    proof = world.proof(f"{AUD}/dpop/orders", token)
    argv = ["--method", "GET", "--url", f"{AUD}/dpop/orders?page=2", "--authorization", f"DPoP {token}",
            "--dpop", proof]
    for _ in range(2):  # read-only: the same proof is still unused the second time
        result, report = explain(run, world.config, *argv)
        assert result.code == 0 and report["decision"]["outcome"] == "allow" and report["failed"] is None
        assert all(check["ok"] for check in report["checks"])
    steps = [check["step"] for check in report["checks"]]
    for step in ("route", "signature", "aud", "exp", "cnf", "htm", "htu", "ath", "jti not replayed", "cnf.jkt",
                 "scopes"):
        assert step in steps
    assert steps.index("route") < steps.index("signature") < steps.index("htu") < steps.index("scopes")
    headers = dict(report["decision"]["headers"])
    assert headers["X-Auth-Jkt"] == jkt(world.k1) and headers["X-Auth-Binding"] == "dpop"
    answer = world.auth("GET", f"{AUD}/dpop/orders?page=2", [("Authorization", f"DPoP {token}"), ("DPoP", proof)])
    assert answer.status_code == 200  # explain did not record the proof's jti


def test_a_replayed_proof_is_shown_as_seen(run: Run, world: World) -> None:
    auth, proofs = _dpop(world)
    headers = [("Authorization", auth[0]), ("DPoP", proofs[0])]
    assert world.auth("GET", f"{AUD}/dpop/orders", headers).status_code == 200  # the service consumes it
    _, report = explain(run, world.config, "--method", "GET", "--url", f"{AUD}/dpop/orders",
                        "--authorization", auth[0], "--dpop", proofs[0])
    assert_failed_check(report, "dpop_replay", "jti not replayed", got="already used")
    assert_same_answer(report, world.auth("GET", f"{AUD}/dpop/orders", headers))


def test_an_internal_error_is_shown_where_it_happened(run: Run, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenguard.core.policy import Route

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Route, "authorize", broken)
    case = Case("able to decide", url=f"{AUD}/any/x", authorization=[f"Bearer {world.token()}"])
    _, report = explain(run, world.config, *_flags(world, case))
    assert_failed_check(report, "internal_error", "able to decide", got="RuntimeError at test_explain.py")
    assert report["decision"]["status"] == 500
    assert_same_answer(report, world.auth(case.method, case.url, _auth_headers(world, case)))


SUB_REQUEST = "GET /auth HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Original-Method: GET\r\n{headers}\r\n"


@pytest.mark.parametrize(("reason", "headers", "got"), [
    ("bad_forwarded_proto", "X-Forwarded-Proto: ftp\r\nX-Forwarded-Host: api.test\r\nX-Original-URI: /any/x",
     "scheme is not http or https"),
    ("bad_forwarded_host", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.test/evil\r\nX-Original-URI: /any/x",
     "not a valid host name"),
    ("bad_forwarded_port", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.test\r\nX-Forwarded-Port: 99999\r\n"
     "X-Original-URI: /any/x", "not a number from 1 to 65535"),
    ("bad_request_uri", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.test\r\nX-Original-URI: /any/x#frag",
     "not an origin-form URI"),
    ("headers_too_large", "X-Original-URI: /any/x\r\n" + "\r\n".join(f"X-Pad-{n}: {'p' * 30000}" for n in range(3)),
     "larger than"),
    ("too_many_header_fields", "X-Original-URI: /any/x\r\n" + "\r\n".join(f"X-Pad-{n}: 1" for n in range(210)),
     "more header fields"),
])
def test_a_pasted_sub_request_with_a_broken_framing(run: Run, world: World, monkeypatch: pytest.MonkeyPatch,
                                                    reason: str, headers: str, got: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SUB_REQUEST.format(headers=headers + "\r\n")))
    result, report = explain(run, world.config, "-")
    assert report["request"]["auth_sub_request"] is True
    assert_failed_check(report, reason, "original request", got=got)
    pairs = [("X-Original-Method", "GET"), *(tuple(line.split(": ", 1)) for line in headers.split("\r\n"))]
    assert_same_answer(report, world.client().get("/auth", headers=pairs))


@pytest.mark.parametrize(("reason", "headers", "got"), [
    ("bad_forwarded_method", "X-Original-Method: POST\r\nX-Original-URI: /any/x", "more than once"),
    ("underscore_header", "X-Original-URI: /any/x\r\nX_Original_URI: /other", "underscores"),
])
def test_a_pasted_sub_request_only_an_exact_name_engine_tells_apart(run: Run, world: World,
                                                                    monkeypatch: pytest.MonkeyPatch, reason: str,
                                                                    headers: str, got: str) -> None:
    """A repeated field and an underscore spelling: WSGI (the Flask client behind world.auth) folds the first
    and reads the second as the hyphenated field, so only explain, which keeps every line and name as an
    exact-name engine does, can be held to the reason here."""
    monkeypatch.setattr("sys.stdin", io.StringIO(SUB_REQUEST.format(headers=headers + "\r\n")))
    _, report = explain(run, world.config, "-")
    assert_failed_check(report, reason, "original request", got=got)
    assert report["decision"]["status"] == 401


def test_a_malformed_certificate_from_the_proxy(run: Run, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    token = world.mtls_token()
    headers = ("X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.test\r\nX-Original-URI: /mtls/x\r\n"
               f"Authorization: Bearer {token}\r\nX-SSL-Client-Cert: not-a-certificate")
    monkeypatch.setattr("sys.stdin", io.StringIO(SUB_REQUEST.format(headers=headers + "\r\n")))
    _, report = explain(run, world.config, "-")
    assert_failed_check(report, "cert_malformed", "client certificate", got="not")
    answer = world.auth("GET", f"{AUD}/mtls/x", [("Authorization", f"Bearer {token}"),
                                                 ("X-SSL-Client-Cert", "not-a-certificate")])
    assert_same_answer(report, answer)


def test_a_certificate_bound_token_with_the_right_certificate(run: Run, world: World) -> None:
    case = Case("", url=f"{AUD}/mtls/x", cert="cert1", authorization=[f"Bearer {world.mtls_token()}"])
    result, report = explain(run, world.config, *_flags(world, case))
    assert result.code == 0 and report["decision"]["outcome"] == "allow"
    assert world.cert1 is not None
    from .explain_world import x5t

    assert dict(report["decision"]["headers"])["X-Auth-X5t-S256"] == x5t(world.cert1)


def test_curl_and_raw_http_inputs_give_the_flags_answer(run: Run, world: World,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    token = world.dpop_token()
    proof = world.proof(f"{AUD}/dpop/orders", token, method="POST")
    curl = (f"curl -sS -k -X POST --data '{{\"a\": 1}}' -H 'Authorization: DPoP {token}' \\\n"
            f"  -H \"DPoP: {proof}\" -H 'Accept: application/json' '{AUD}/dpop/orders?x=1'")
    _, by_curl = explain(run, world.config, "--curl", curl)
    assert by_curl["decision"]["outcome"] == "allow", by_curl["failed"]
    assert by_curl["request"]["ignored"] == ["-s", "-S", "-k", "--data (the body: tokenguard never sees it)"]
    raw = (f"POST /dpop/orders?x=1 HTTP/1.1\r\nHost: api.test\r\nAuthorization: DPoP {token}\r\n"
           f"DPoP: {proof}\r\nContent-Length: 7\r\n\r\n{{\"a\":1}}")
    monkeypatch.setattr("sys.stdin", io.StringIO(raw))
    _, by_http = explain(run, world.config, "-")
    assert _timeless(by_http["checks"]) == _timeless(by_curl["checks"])
    assert by_http["decision"] == by_curl["decision"]
    _, by_flags = explain(run, world.config, "--method", "POST", "--url", f"{AUD}/dpop/orders?x=1",
                          "--authorization", f"DPoP {token}", "--dpop", proof)
    assert _timeless(by_flags["checks"]) == _timeless(by_curl["checks"])


def _timeless(checks: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The checks without the clock readings (the runs are a moment apart)."""
    return [(c["step"], c["section"], c["ok"]) + (() if c["step"] in ("exp", "nbf", "iat") else (c["expected"],
                                                                                                c["got"]))
            for c in checks]


def test_offline_jwks_file(run: Run, world: World, tmp_path: Path) -> None:
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps({"keys": [world.issuer.key.as_dict(private=False)]}))
    bearer = world.token()
    _, report = explain(run, world.config, "--jwks", str(jwks), "--method", "GET", "--url", f"{AUD}/any/x",
                        "--authorization", f"Bearer {bearer}")
    assert report["decision"]["outcome"] == "allow"
    signing = next(c for c in report["checks"] if c["step"] == "signing key")
    assert jwks.resolve().as_uri() in signing["expected"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"keys": [world.attacker.as_dict(private=False)]}))
    _, report = explain(run, world.config, "--jwks", str(other), "--method", "GET", "--url", f"{AUD}/any/x",
                        "--authorization", f"Bearer {bearer}")
    assert report["decision"]["reason"] == "token_unknown_kid"


def test_text_output_shows_decoded_credentials_without_colour_off_a_terminal(run: Run, world: World) -> None:
    token = world.dpop_token()
    proof = world.proof(f"{AUD}/dpop/orders", token, {"htu": "http://api.test/dpop/orders"})
    result = run("explain", "--config", str(world.config), "--method", "GET", "--url", f"{AUD}/dpop/orders",
                 "--authorization", f"DPoP {token}", "--dpop", proof)
    assert result.code == 1
    out = result.out
    assert "\033[" not in out  # stdout is not a terminal
    assert '"typ": "dpop+jwt"' in out and '"cnf": {' in out  # both decoded for the holder
    assert "✗ htu" in out and "expected  https://api.test/dpop/orders" in out
    assert "got       http://api.test/dpop/orders" in out
    assert "X-Auth-Error: dpop_htu_mismatch" in out and "HTTP 401" in out
    assert token.split(".")[2] not in out and proof.split(".")[2] not in out  # never a signature
    coloured = run("explain", "--config", str(world.config), "--color", "always", "--method", "GET", "--url",
                   f"{AUD}/dpop/orders", "--authorization", f"DPoP {token}", "--dpop", proof)
    assert "\033[31;1m✗\033[0m" in coloured.out


def test_terminal_escapes_in_a_token_are_not_printed(run: Run, world: World) -> None:
    hostile = world.token({"sub": "\033]0;pwned\007\033[2J"})
    result = run("explain", "--config", str(world.config), "--color", "never", "--method", "GET", "--url",
                 f"{AUD}/any/x", "--authorization", f"Bearer {hostile}")
    assert "\033" not in result.out and "\007" not in result.out


def test_explain_never_creates_state(run: Run, tmp_path: Path, world: World) -> None:
    state = tmp_path / "fresh-state"
    config = tmp_path / "fresh.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\n[token]\naudience = "{AUD}"\n'
                      f'[[issuer]]\nissuer = "{world.issuer.url}"\n[[route]]\npath = "/*"\ndpop_nonce = true\n'
                      'binding = "dpop"\n')
    auth, proofs = _dpop(world, "/x")
    _, report = explain(run, config, "--method", "GET", "--url", f"{AUD}/x", "--authorization", auth[0],
                        "--dpop", proofs[0])
    assert report["decision"]["reason"] == "dpop_nonce_missing"
    assert not state.exists()
    assert any("no state directory" in note for note in report["notes"])


@pytest.mark.parametrize(("argv", "needle"), [
    ((), "give the request one way"),
    (("--method", "GET"), "--method and --url go together"),
    (("--curl", "curl -s", "--method", "GET", "--url", "https://a.test/"), "got --curl and --method/--url"),
    (("--curl", "curl -H 'Authorization: x"), "cannot split the command line"),
    (("--curl", "curl -s -k"), "has no URL"),
    (("--method", "GET", "--url", "ftp://a.test/"), "not an absolute http(s) URL"),
    (("--method", "GET", "--url", "https://a.test:99999/"), "Port out of range"),
    (("--method", "G ET", "--url", "https://a.test/"), "not an HTTP method"),
    (("--method", "GET", "--url", "https://a.test/", "--cert", "/nonexistent.pem"), "certificate file not found"),
    (("--method", "GET", "--url", "https://a.test/", "--jwks", "/nonexistent.json"), "not found"),
])
def test_usage_errors_are_one_line(run: Run, world: World, argv: tuple[str, ...], needle: str) -> None:
    result = run("explain", "--config", str(world.config), *argv)
    assert result.code == 2, result.out
    assert needle in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_log_explain_puts_the_checks_in_a_denied_requests_log_line(world: World, tmp_path: Path) -> None:
    import logging

    from tokenguard.settings import load_config
    from tokenguard.settings.wiring import build_service
    from tokenguard.web.app import create_app

    config = tmp_path / "log.toml"
    config.write_text(world.config.read_text().replace("log_decisions = false",
                                                       "log_decisions = false\nlog_explain = true"))
    client = create_app(build_service(load_config(config)), log_level="info").test_client()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("tokenguard").addHandler(handler)
    try:
        token = world.dpop_token()
        proof = world.proof(f"{AUD}/dpop/orders", token, {"htu": "https://api.test/dpop/\033[31mother"})
        headers = [("X-Original-Method", "GET"), ("X-Original-URI", "/dpop/orders"), ("X-Forwarded-Proto", "https"),
                   ("X-Forwarded-Host", "api.test"), ("Authorization", f"DPoP {token}"), ("DPoP", proof)]
        assert client.get("/auth", headers=headers).status_code == 401
        good = world.proof(f"{AUD}/dpop/orders", token)
        assert client.get("/auth", headers=[*headers[:5], ("DPoP", good)]).status_code == 200
    finally:
        logging.getLogger("tokenguard").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    decisions = [line for line in lines if line.get("event") == "decision"]
    assert [d["result"] for d in decisions] == ["deny"]  # log_decisions off: only the denial, with its checks
    explained = decisions[0]["explain"]
    assert [c["check"] for c in explained][:2] == ["route", "Authorization"]
    assert [c for c in explained if not c["ok"]] == [explained[-1]] == [{
        "check": "htu", "rfc": "RFC 9449 §4.3 (9)", "ok": False, "expected": f"{AUD}/dpop/orders",
        "got": "https://api.test/dpop/?[31mother (not an absolute http(s) URI)"}]  # sanitised
    text = stream.getvalue()
    assert token not in text and proof not in text and "\033" not in text
    assert token.split(".")[2] not in text and proof.split(".")[2] not in text


def test_reason_extraction_finds_codes_in_every_form() -> None:
    """The extractor sees first arguments, ``reason=`` keywords and ``reason_code`` attributes, and nothing else."""
    codes = reason_codes_in_code()
    for code in ("dpop_replay", "no_credentials", "unsupported_scheme", "replay_store_unavailable", "bad_request_url",
                 "introspection_unavailable", "internal_error", "jwks_unavailable", "claim_mismatch"):
        assert code in codes
    assert not {"invalid_token", "use_dpop_nonce", "dpop+jwt", "at+jwt"} & codes  # RFC error codes and types


def test_explain_can_present_a_certificate_in_every_configured_format(world: World) -> None:
    """``--cert`` goes to /auth in the header format the config names; web.certs reads each one back."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from tokenguard.cli.explain import CERT_WRITERS
    from tokenguard.web.certs import FORMATS, read_client_cert

    assert world.cert1 is not None
    der, pem = world.cert1.public_bytes(Encoding.DER), world.cert1.public_bytes(Encoding.PEM).decode()
    assert set(CERT_WRITERS) == set(FORMATS)  # a new format needs a writer here
    for name, writer in CERT_WRITERS.items():
        assert read_client_cert(writer(der, pem), name) == der, name


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False)])
def test_colour_on_a_terminal_unless_no_color(tmp_path: Path, no_color: str | None, coloured: bool) -> None:
    """``--color auto``: escape codes only when stdout is a terminal, and never with ``NO_COLOR``."""
    import os
    import pty
    import subprocess
    import sys

    config = tmp_path / "tg.toml"
    config.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | ({"NO_COLOR": no_color} if no_color else {})
    leader, follower = pty.openpty()
    try:
        process = subprocess.run([sys.executable, "-m", "tokenguard", "explain", "--config", str(config), "--method",
                                  "GET", "--url", "https://api.test/x"], stdout=follower, stderr=subprocess.PIPE,
                                 env=env, timeout=60, cwd=REPO)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    out = b"".join(chunks).decode()
    assert process.returncode == 1, process.stderr
    assert "X-Auth-Error: no_credentials" in out
    assert ("\x1b[" in out) is coloured
