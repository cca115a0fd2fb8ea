"""Issue 9 at the adapter: what tokenguard authorizes is the request the proxy forwards, or a specific refusal.

Engine-independent: the sub-request is an :class:`Incoming` with exact header names (as an ASGI or RSGI
engine hands it over), or a WSGI environ through the WSGI front. The same framings through real nginx,
Caddy and every engine are in ``tests/integration/test_request_integrity.py``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from support import self_signed_cert

from tokenguard.core.b64 import sha256_b64url
from tokenguard.web.adapters.forwarded import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_FIELDS, ProxyTrust
from tokenguard.web.environ import incoming_from_environ, process_variables
from tokenguard.web.responses import Answer

from .integrity import ORIGIN, DpopHolder, incoming, make_service, nginx_fields


@pytest.fixture
def service(issuer: Any, tmp_path: Any) -> Any:
    return make_service(issuer, tmp_path)


def denied(answer: Answer, reason: str, error: str | None = "invalid_request") -> None:
    assert answer.status == 401, (answer.status, answer.reason)
    assert answer.reason == reason, answer.reason
    assert answer.error == error
    challenges = [v for k, v in answer.headers if k == "WWW-Authenticate"]
    assert len(challenges) == 1 and (error is None or f'error="{error}"' in challenges[0])


# ------------------------------------------------------------------------- host, port, target, method


@pytest.mark.parametrize("host", ["api.test?", "api.test#", "api.test/admin", "user@api.test", "api.test\\admin",
                                  "api test", "api.test\x00", "api.test\r", "[::1", "", "api.test?:443"])
def test_a_forwarded_host_that_is_not_a_host_is_refused(service: Any, issuer: Any, host: str) -> None:
    """Issue 9 item 1: ``Host: api.test?`` made tokenguard decide ``/`` while nginx forwarded ``/admin/x``."""
    holder = DpopHolder(issuer, scope="read")
    fields = [*nginx_fields("/admin/x", host=host), *holder.fields(f"{ORIGIN}/")]
    if host == "":
        fields = [(k, v) for k, v in fields if k != "X-Forwarded-Host"] + [("X-Forwarded-Host", " ")]
    answer = service.handle(incoming(fields))
    assert not answer.allow
    if host in ("", "api.test\r"):  # blank after trimming: the Host header's own value is judged
        assert answer.status in (401, 403)
    else:
        denied(answer, "bad_forwarded_host")


@pytest.mark.parametrize("port,reason", [("0", "bad_forwarded_port"), ("65536", "bad_forwarded_port"),
                                         ("-1", "bad_forwarded_port"), ("44 3", "bad_forwarded_port"),
                                         ("443,80", "bad_forwarded_port"), ("８０", "bad_forwarded_port")])
def test_ports_out_of_range_are_refused(service: Any, issuer: Any, port: str, reason: str) -> None:
    answer = service.handle(incoming([*nginx_fields("/x", port=port), ("Authorization", f"Bearer {issuer.token()}")]))
    denied(answer, reason)


@pytest.mark.parametrize("uri", ["https://api.test/admin/x", "admin/x", "*", "/a b",
                                 "/a\x00b", "/a#frag", "/é", "/" + "a" * 9000])
def test_the_original_uri_must_be_origin_form(service: Any, issuer: Any, uri: str) -> None:
    answer = service.handle(incoming([*nginx_fields(uri), ("Authorization", f"Bearer {issuer.token()}")]))
    assert not answer.allow and answer.error == "invalid_request"
    assert answer.reason in ("bad_request_uri", "request_uri_too_large")


@pytest.mark.parametrize("method", ["GET POST", "GET,POST", "", " ", "G\x00T", "GÉT"])
def test_the_original_method_must_be_a_token(service: Any, issuer: Any, method: str) -> None:
    fields = [*nginx_fields("/x", method=method), ("Authorization", f"Bearer {issuer.token()}")]
    answer = service.handle(incoming(fields))
    if method.strip() == "":  # absent: the sub-request's own method stands in
        assert answer.allow
    else:
        denied(answer, "bad_forwarded_method")


def test_the_decision_names_the_path_that_was_decided(service: Any, issuer: Any, caplog: Any) -> None:
    """The decision log shows what the route was chosen for: the normalised path, not the raw header."""
    service.log_decisions = True
    logger = logging.getLogger("tokenguard.decision")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="tokenguard.decision")
    try:
        answer = service.handle(incoming([*nginx_fields("/public/%2e%2e/admin/x?q=1"),
                                          ("Authorization", f"Bearer {issuer.token(scope='read')}")]))
    finally:
        logger.removeHandler(caplog.handler)
    assert answer.status == 403 and answer.reason == "insufficient_scope"
    assert answer.decision.target is not None and answer.decision.target.path == "/admin/x"
    line = json.loads(caplog.records[-1].getMessage())
    assert line["path"] == "/admin/x" and line["route"] == "admin" and line["host"] == "api.test"


# -------------------------------------------------------------------------------- exact field names


@pytest.mark.parametrize("name", ["X_Original_URI", "x_original_uri", "X-Original_URI", "X_Forwarded_Host",
                                  "X_Forwarded-Proto", "X_SSL_Client_Cert", "x_forwarded_uri", "X_Auth_Subject",
                                  "x-auth_binding"])
def test_an_underscore_spelling_of_a_trusted_field_is_refused(service: Any, issuer: Any, name: str) -> None:
    """Issue 9 item 2: WSGI reads ``X_Original_URI`` as ``X-Original-URI``; an upstream might too."""
    fields = [*nginx_fields("/mtls/secret"), (name, "/any/x"), ("Authorization", f"Bearer {issuer.token()}")]
    denied(service.handle(incoming(fields)), "underscore_header")


def test_underscore_names_tokenguard_does_not_trust_are_ignored(service: Any, issuer: Any) -> None:
    fields = [*nginx_fields("/x"), ("X_Custom_Thing", "1"), ("Authorization", f"Bearer {issuer.token()}")]
    assert service.handle(incoming(fields)).allow


@pytest.mark.parametrize("name,reason", [("X-Forwarded-Host", "bad_forwarded_host"),
                                         ("X-Forwarded-Proto", "bad_forwarded_proto"),
                                         ("X-Forwarded-Port", "bad_forwarded_port"), ("Host", "bad_host"),
                                         ("X-Original-URI", "bad_request_uri"),
                                         ("X-Original-Method", "bad_forwarded_method")])
def test_a_field_the_proxy_sets_once_is_refused_when_repeated(service: Any, issuer: Any, name: str,
                                                                reason: str) -> None:
    fields = nginx_fields("/x")
    value = next(v for k, v in fields if k == name)
    fields = [*fields, (name, value), ("Authorization", f"Bearer {issuer.token()}")]
    denied(service.handle(incoming(fields)), reason)


@pytest.mark.parametrize("first,second,reason", [("X-Original-URI", "X-Forwarded-Uri", "bad_request_uri"),
                                                 ("X-Original-Method", "X-Forwarded-Method", "bad_forwarded_method")])
def test_both_proxy_conventions_at_once_are_refused(service: Any, issuer: Any, first: str, second: str,
                                                    reason: str) -> None:
    """Traefik passes client headers on and sets X-Forwarded-Uri: a client's X-Original-URI must not win."""
    fields = [(k, v) for k, v in nginx_fields("/mtls/secret") if k != first]
    fields += [(first, "/any/x" if "URI" in first else "GET"), (second, "/mtls/secret" if "Uri" in second else "GET"),
               ("Authorization", f"Bearer {issuer.token()}")]
    denied(service.handle(incoming(fields)), reason)


# ------------------------------------------------------------------------------------ tokenguard's limits


def test_limits_are_tokenguards_with_the_rfc_answer_per_field(service: Any, issuer: Any) -> None:
    """Issue 9 item 4: each oversized input gets its own RFC answer, never the server's 431."""
    big_token = issuer.token(pad="p" * 11000)  # ~15 KB: within tokenguard's 16 KiB
    assert 10_000 < len(big_token) <= 16384
    assert service.handle(incoming([*nginx_fields("/x"), ("Authorization", f"Bearer {big_token}")])).allow

    huge_token = issuer.token(pad="p" * 13000)
    denied(service.handle(incoming([*nginx_fields("/x"), ("Authorization", f"Bearer {huge_token}")])),
           "token_too_large", "invalid_token")

    holder = DpopHolder(issuer)
    proof_fields = holder.fields(f"{ORIGIN}/dpop/x", pad="x" * 5750)  # a proof just over 8 KiB
    assert 8192 < len(proof_fields[1][1]) < 8400
    denied(service.handle(incoming([*nginx_fields("/dpop/x"), *proof_fields])), "dpop_too_large", "invalid_dpop_proof")

    many = [("DPoP", holder.fields(f"{ORIGIN}/dpop/x")[1][1]) for _ in range(99)]
    denied(service.handle(incoming([*nginx_fields("/dpop/x"), ("Authorization", f"DPoP {holder.token}"), *many])),
           "dpop_multiple_proofs", "invalid_dpop_proof")

    bearer = ("Authorization", f"Bearer {issuer.token()}")
    cookie = ("Cookie", "c=" + "v" * 30000)
    assert service.handle(incoming([*nginx_fields("/x"), cookie, bearer])).allow
    denied(service.handle(incoming([*nginx_fields("/x"), cookie, cookie, cookie, bearer])), "headers_too_large")

    pads = [(f"X-Pad-{n}", "1") for n in range(DEFAULT_MAX_HEADER_FIELDS - len(nginx_fields("/x")))]
    assert service.handle(incoming([*nginx_fields("/x"), *pads, bearer])).allow
    denied(service.handle(incoming([*nginx_fields("/x"), *pads, ("X-One-More", "1"), bearer])),
           "too_many_header_fields")


def test_header_limits_are_configurable(issuer: Any, tmp_path: Any) -> None:
    service = make_service(issuer, tmp_path, server={"max_header_bytes": 2000, "max_header_fields": 10})
    bearer = ("Authorization", f"Bearer {issuer.token(pad='p' * 3000)}")  # credentials are not counted
    assert service.handle(incoming([*nginx_fields("/x"), bearer])).allow
    denied(service.handle(incoming([*nginx_fields("/x"), ("Cookie", "c" * 2000), bearer])), "headers_too_large")
    assert DEFAULT_MAX_HEADER_BYTES == 65536


# ------------------------------------------------------------------------------------ one token, one place


def test_a_query_token_next_to_the_header_is_refused_on_every_route(service: Any, issuer: Any) -> None:
    holder = DpopHolder(issuer, scope="read admin")
    for path, fields in (("/x", [("Authorization", f"Bearer {issuer.token(scope='read admin')}")]),
                         ("/admin/x", [("Authorization", f"Bearer {issuer.token(scope='read admin')}")]),
                         ("/dpop/x", holder.fields(f"{ORIGIN}/dpop/x"))):
        answer = service.handle(incoming([*nginx_fields(f"{path}?a=1&access_token={issuer.token()}"), *fields]))
        denied(answer, "multiple_token_methods")
    alone = service.handle(incoming(nginx_fields(f"/x?access_token={issuer.token()}")))
    assert alone.status == 401 and alone.error is None and alone.reason == "token_in_query"  # HDR-RS-06 (a)


# ------------------------------------------------------------------------------ the WSGI front's environ


def test_a_wsgi_environ_carrying_process_variables_is_refused(service: Any, issuer: Any) -> None:
    """granian's WSGI mode copies the process environment into every request: a variable named
    ``HTTP_X_ORIGINAL_URI`` (or ``RAW_URI``) then stands in for what the proxy did not send."""
    process = process_variables({"HTTP_X_ORIGINAL_URI": "/any/x", "RAW_URI": "/any/x", "PATH": "/usr/bin",
                                 "HOME": "/root"})
    assert process == {"HTTP_X_ORIGINAL_URI": "/any/x", "RAW_URI": "/any/x"}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/auth", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
               "HTTP_X_FORWARDED_URI": "/mtls/secret", "HTTP_X_FORWARDED_METHOD": "GET",
               "HTTP_AUTHORIZATION": f"Bearer {issuer.token()}", **process}
    denied(service.handle(incoming_from_environ(environ, process)), "environ_from_process")
    clean = {k: v for k, v in environ.items() if k not in process}
    clean["HTTP_X_FORWARDED_URI"] = "/x"
    assert service.handle(incoming_from_environ(clean, process)).allow


def test_the_wsgi_front_rebuilds_a_missing_raw_target_without_decoding_it(service: Any, issuer: Any) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/envoy/a b/\u00e9", "QUERY_STRING": "q=1",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "HTTP_HOST": "api.test"}
    assert incoming_from_environ(environ, {}).target == "/envoy/a%20b/%E9?q=1"


# --------------------------------------------------------------------------------------- unix: listen


def test_a_unix_socket_peer_is_the_proxy(issuer: Any, tmp_path: Any) -> None:
    """Issue 9 item 7: over ``listen = "unix:PATH"`` the forwarded headers are believed (no peer address)."""
    assert ProxyTrust.from_cidrs(["127.0.0.1/32"], unix_socket=True).trusts(None)
    assert not ProxyTrust.from_cidrs(["127.0.0.1/32"]).trusts(None)
    service = make_service(issuer, tmp_path, server={"listen": f"unix:{tmp_path}/tg.sock"})
    holder = DpopHolder(issuer)
    answer = service.handle(incoming([*nginx_fields("/dpop/x"), *holder.fields(f"{ORIGIN}/dpop/x")], peer=""))
    assert answer.allow, answer.reason


def test_mtls_certificate_header_twice_is_malformed(service: Any, issuer: Any) -> None:
    cert = self_signed_cert()
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = quote(cert.public_bytes(serialization.Encoding.PEM).decode())
    token = issuer.token(cnf={"x5t#S256": sha256_b64url(der)})
    fields = [*nginx_fields("/mtls/x"), ("Authorization", f"Bearer {token}"), ("X-SSL-Client-Cert", pem)]
    assert service.handle(incoming(fields)).allow
    answer = service.handle(incoming([*fields, ("X-SSL-Client-Cert", pem)]))
    assert answer.status == 401 and answer.reason == "cert_malformed"
