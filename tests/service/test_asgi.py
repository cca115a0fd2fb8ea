"""The ASGI front (the default engine's): every header line kept under its own name, nothing of the
process environment in a request, the operator endpoints, lifespan, and failing closed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwk

from tokenguard.core.dpop import create_proof
from tokenguard.settings import parse_config
from tokenguard.settings.wiring import build_service
from tokenguard.web.asgi import AsgiApp, AsgiHeaders, incoming_from_scope

from .conftest import AUD, ISS, Issuer

NGINX = [(b"x-original-method", b"GET"), (b"x-original-uri", b"/resource?x=1"), (b"x-forwarded-proto", b"https"),
         (b"x-forwarded-host", b"api.test"), (b"x-forwarded-port", b"443"), (b"host", b"verifier")]


def asgi_app(issuer: Issuer, tmp_path: Any, **server: Any) -> AsgiApp:
    config = parse_config({"server": {"state_dir": str(tmp_path), **server}, "token": {"audience": AUD},
                           "issuer": [{"issuer": ISS, "jwks_uri": "https://as.test/jwks"}],
                           "replay": {"store": "memory"}}, "test.toml", env={})
    return AsgiApp(build_service(config, fetch=issuer.fetch))


def scope(path: str = "/auth", headers: list[tuple[bytes, bytes]] | None = None, method: str = "GET",
          query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
            "scheme": "http", "client": ("127.0.0.1", 50000), "headers": headers if headers is not None else NGINX}


class Reply:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start, body = messages
        assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
        self.status: int = start["status"]
        self.headers: list[tuple[bytes, bytes]] = start["headers"]
        self.body: bytes = body["body"]

    def one(self, name: str) -> str | None:
        found = [v.decode() for k, v in self.headers if k.lower() == name.lower().encode()]
        assert len(found) <= 1, found
        return found[0] if found else None


def call(app: AsgiApp, request: dict[str, Any]) -> Reply:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(request, receive, send))
    return Reply(sent)


def dpop(issuer: Issuer, url: str = "https://api.test/resource") -> tuple[dict[str, Any], str]:
    key = jwk.generate_key("EC", "P-256", private=True)
    token = issuer.token(cnf={"jkt": key.thumbprint()})
    return key.as_dict(private=True), token


def test_dpop_request_allowed_and_answer_framed_for_the_proxy(issuer: Issuer, tmp_path: Any) -> None:
    key, token = dpop(issuer)
    proof = create_proof(key, htm="GET", htu="https://api.test/resource", access_token=token)
    reply = call(asgi_app(issuer, tmp_path), scope(headers=[*NGINX, (b"authorization", f"DPoP {token}".encode()),
                                                            (b"dpop", proof.encode())]))
    assert reply.status == 200 and reply.body == b""
    assert reply.one("X-Auth-Binding") == "dpop" and reply.one("X-Auth-Subject") == "u1"
    assert reply.one("Content-Length") == "0"


def test_two_dpop_lines_are_two_proofs(issuer: Issuer, tmp_path: Any) -> None:
    """RFC 9449 §4.3 (1): the ASGI scope keeps both field lines, so the request is refused as such."""
    key, token = dpop(issuer)
    proofs = [create_proof(key, htm="GET", htu="https://api.test/resource", access_token=token) for _ in range(2)]
    headers = [*NGINX, (b"authorization", f"DPoP {token}".encode()), (b"dpop", proofs[0].encode()),
               (b"dpop", proofs[1].encode())]
    reply = call(asgi_app(issuer, tmp_path), scope(headers=headers))
    assert reply.status == 401 and reply.one("X-Auth-Error") == "dpop_multiple_proofs"


def test_two_authorization_lines_are_refused(issuer: Issuer, tmp_path: Any) -> None:
    token = issuer.token()
    headers = [*NGINX, (b"authorization", f"Bearer {token}".encode()), (b"authorization", f"Bearer {token}".encode())]
    reply = call(asgi_app(issuer, tmp_path), scope(headers=headers))
    assert reply.status == 401 and reply.one("X-Auth-Error") == "multiple_authorization"


def test_underscore_twin_is_not_the_forwarded_header(issuer: Issuer, tmp_path: Any) -> None:
    """``X_Forwarded_Proto`` is another header than ``X-Forwarded-Proto`` (a WSGI server merges them): it is
    never read as the forwarded scheme, and an underscore spelling of a trusted field is refused outright."""
    key, token = dpop(issuer)
    proof = create_proof(key, htm="GET", htu="https://api.test/resource", access_token=token)
    headers = [(k, v) for k, v in NGINX if k != b"x-forwarded-proto"]
    headers += [(b"x_forwarded_proto", b"https"), (b"authorization", f"DPoP {token}".encode()),
                (b"dpop", proof.encode())]
    reply = call(asgi_app(issuer, tmp_path), scope(headers=headers))
    assert reply.status == 401 and reply.one("X-Auth-Error") == "underscore_header"


def test_process_environment_never_reaches_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A WSGI server that copies ``os.environ`` into every environ would make these every request's target."""
    for name, value in (("RAW_URI", "/evil"), ("REQUEST_URI", "/evil"), ("HTTP_X_ORIGINAL_URI", "/evil"),
                        ("HTTP_DPOP", "x.y.z"), ("REMOTE_ADDR", "10.9.9.9")):
        monkeypatch.setenv(name, value)
    incoming = incoming_from_scope(scope("/envoy/orders", headers=[], query=b"page=2"))
    assert incoming.target == "/envoy/orders?page=2" and incoming.path == "/envoy/orders"
    assert incoming.headers.values("X-Original-URI") == () and incoming.headers.values("DPoP") == ()
    assert incoming.peer == "127.0.0.1" and incoming.scheme == "http"
    assert os.environ["RAW_URI"] == "/evil"


def test_target_is_the_raw_path_and_query_as_sent() -> None:
    request = scope("/envoy/a b", query=b"x=%2F")
    request["raw_path"] = b"/envoy/a%20b"
    assert incoming_from_scope(request).target == "/envoy/a%20b?x=%2F"


_NAMES = st.sampled_from(["dpop", "DPoP", "x-forwarded-proto", "X_Forwarded_Proto", "x_forwarded_proto",
                          "authorization", "Authorization", "x-original-uri"])
_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12)


@settings(derandomize=True, max_examples=200)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12), _NAMES)
def test_header_source_keeps_every_line_under_its_own_name(pairs: list[tuple[str, str]], asked: str) -> None:
    """Names are compared case-insensitively and nothing else: '_' is not '-'; every line is one value, in
    arrival order, even when it holds a comma."""
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    expected = tuple(value for name, value in pairs if name.lower() == asked.lower())
    assert AsgiHeaders(raw).values(asked) == expected


def test_operator_endpoints(issuer: Issuer, tmp_path: Any) -> None:
    app = asgi_app(issuer, tmp_path)
    health = call(app, scope("/healthz", headers=[]))
    assert health.status == 200 and health.body == b"ok\n"
    ready = call(app, scope("/readyz", headers=[]))
    body = json.loads(ready.body)
    assert ready.status == 200 and body["ready"] is True and set(body["checks"].values()) == {"ok"}
    call(app, scope(headers=NGINX))  # one decision: no credentials
    metrics = call(app, scope("/metrics", headers=[]))
    assert metrics.status == 200 and (metrics.one("Content-Type") or "").startswith("text/plain")
    assert b'tokenguard_decisions_total{reason="no_credentials",result="deny"}' in metrics.body
    head = call(app, scope("/healthz", headers=[], method="HEAD"))
    assert head.status == 200 and head.body == b"" and head.one("Content-Length") == "3"
    post = call(app, scope("/healthz", headers=[], method="POST"))
    assert post.status == 405 and post.one("Allow") == "GET, HEAD"
    missing = call(app, scope("/nothing", headers=[]))
    assert missing.status == 404


def test_readyz_is_503_until_keys_are_loaded(issuer: Issuer, tmp_path: Any) -> None:
    issuer.down = True
    reply = call(asgi_app(issuer, tmp_path), scope("/readyz", headers=[]))
    assert reply.status == 503 and json.loads(reply.body)["ready"] is False


def test_a_failure_in_the_front_fails_closed_with_a_reason(issuer: Issuer, tmp_path: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    app = asgi_app(issuer, tmp_path)

    def broken(_incoming: Any) -> Any:
        raise RuntimeError("boom")

    app.service.handle = broken  # type: ignore[method-assign]
    logger = logging.getLogger("tokenguard")
    logger.addHandler(caplog.handler)
    try:
        reply = call(app, scope(headers=NGINX))
    finally:
        logger.removeHandler(caplog.handler)
    assert reply.status == 500 and reply.one("X-Auth-Error") == "internal_error"
    assert reply.one("Cache-Control") == "no-store"
    assert '"event":"internal_error"' in caplog.text and "RuntimeError" in caplog.text and "boom" not in caplog.text
    configured = asgi_app(issuer, tmp_path, fail_status=401)  # the configured fail-closed status holds here too
    configured.service.handle = broken  # type: ignore[method-assign]
    reply = call(configured, scope(headers=NGINX))
    assert reply.status == 401 and reply.one("X-Auth-Error") == "internal_error"
    assert (reply.one("WWW-Authenticate") or "").startswith("Bearer")


def test_lifespan_runs_the_startup_hook(issuer: Issuer, tmp_path: Any) -> None:
    started: list[bool] = []
    app = AsgiApp(asgi_app(issuer, tmp_path).service, on_startup=lambda: started.append(True))
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert started == [True]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
