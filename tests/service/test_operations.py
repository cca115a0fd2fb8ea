"""What operators see (issue 10, item 8): one JSON line per event with an ISO 8601 UTC timestamp, the
request id on every decision and in every answer, the issuer named where it matters, never a token."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenguard.web.adapters import Incoming
from tokenguard.web.logs import Fields, JsonFormatter
from tokenguard.web.service import _request_id

from .conftest import ISS, Issuer

NGINX = {"X-Original-Method": "GET", "X-Original-URI": "/resource", "X-Forwarded-Proto": "https",
         "X-Forwarded-Host": "api.test"}
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Callable[[], list[dict[str, Any]]]:
    """tokenguard's log lines so far, as the server writes them (its own handler on stderr), parsed."""
    seen: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        for handler in logging.getLogger("tokenguard").handlers:
            handler.flush()  # lines leave in batches (web/logs.py)
        seen.extend(json.loads(line) for line in capsys.readouterr().err.splitlines())
        return seen

    return read


def record(name: str, msg: object, level: int = logging.INFO, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, None, exc_info)


@freeze_time("2026-03-04 05:06:07.250")
def test_json_lines_start_with_an_iso_utc_timestamp_and_level() -> None:
    formatter = JsonFormatter()
    ours = json.loads(formatter.format(record("tokenguard", Fields(event="x", n=1), logging.WARNING)))
    assert ours == {"ts": "2026-03-04T05:06:07.250Z", "level": "warning", "event": "x", "n": 1}
    engine = json.loads(formatter.format(record("gunicorn.error", "Worker timeout (pid:7)", exc=True)))
    assert engine["ts"] == "2026-03-04T05:06:07.250Z" and engine["logger"] == "gunicorn.error"
    assert engine["message"] == "Worker timeout (pid:7)" and "ValueError: boom" in engine["exception"]
    assert str(Fields(event="x")) == '{"event":"x"}'  # what any other handler sees


def test_decision_line_carries_timestamp_request_id_and_issuer(make_client: Callable[..., Any], issuer: Issuer,
                                                               lines: Callable[[], list[dict[str, Any]]]) -> None:
    client = make_client({"server": {"log_decisions": True}, "route": [{"path": "/resource", "binding": "any"}]})
    token = issuer.token()
    response = client.get("/auth", headers={**NGINX, "Authorization": f"Bearer {token}",
                                            "X-Request-Id": "7f1c0a5e-2b6d-4c1e-9a70-0c1d2e3f4a5b"})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "7f1c0a5e-2b6d-4c1e-9a70-0c1d2e3f4a5b"
    (line,) = [line for line in lines() if line.get("event") == "decision"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert line["request_id"] == "7f1c0a5e-2b6d-4c1e-9a70-0c1d2e3f4a5b" and line["issuer"] == ISS
    assert token not in json.dumps(lines())


@pytest.mark.parametrize("sent", ["two words", "x" * 129, "caf\u00e9".encode().decode("latin-1"), "-starts-with-dash",
                                  "a\\b", ""])
def test_an_implausible_request_id_is_replaced_never_echoed(make_client: Callable[..., Any], issuer: Issuer,
                                                            lines: Callable[[], list[dict[str, Any]]],
                                                            sent: str) -> None:
    client = make_client({"server": {"log_decisions": True}})
    response = client.get("/auth", headers={**NGINX, "X-Request-Id": sent})
    assert response.status_code == 401
    generated = response.headers["X-Request-Id"]
    assert HEX32.fullmatch(generated)
    (line,) = [line for line in lines() if line.get("event") == "decision"]
    assert line["request_id"] == generated


def test_every_answer_has_a_request_id_even_when_failing_closed(make_client: Callable[..., Any],
                                                                issuer: Issuer) -> None:
    client = make_client()
    issuer.down = True
    response = client.get("/auth", headers={**NGINX, "Authorization": f"Bearer {issuer.token()}"})
    assert response.status_code == 500 and response.headers["X-Auth-Error"] == "jwks_unavailable"
    assert HEX32.fullmatch(response.headers["X-Request-Id"])


def test_unavailable_keys_are_explained_naming_the_issuer_and_cause(make_client: Callable[..., Any], issuer: Issuer,
                                                                    lines: Callable[[], list[dict[str, Any]]]) -> None:
    client = make_client()
    issuer.down = True
    client.get("/auth", headers={**NGINX, "Authorization": f"Bearer {issuer.token()}"})
    (decision,) = [line for line in lines() if line.get("event") == "decision"]
    assert decision["reason"] == "jwks_unavailable"
    assert decision["detail"] == f"issuer {ISS}: no signing keys: connection refused"
    failed = [line for line in lines() if line.get("event") == "jwks_fetch_failed"]
    assert failed and failed[0]["issuer"] == ISS and failed[0]["error"] == "connection refused"
    assert client.get("/readyz").get_json()["checks"][f"issuer {ISS}"] == decision["detail"]


class _Headers:
    def __init__(self, values: tuple[str, ...]) -> None:
        self._values = values

    def values(self, name: str) -> tuple[str, ...]:
        return self._values if name.lower() == "x-request-id" else ()


@settings(derandomize=True, max_examples=300)
@given(st.lists(st.text(max_size=140), max_size=2))
def test_request_id_is_the_sent_one_or_a_fresh_one(sent: list[str]) -> None:
    """Whatever the proxy sends, the id logged and returned is printable, short and free of separators."""
    incoming = Incoming("GET", "/auth", "/auth", "http", "127.0.0.1", _Headers(tuple(sent)))
    chosen = _request_id(incoming)
    plausible = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")  # nginx's $request_id, UUIDs, trace ids
    if len(sent) == 1 and plausible.fullmatch(sent[0]):
        assert chosen == sent[0]
    else:
        assert HEX32.fullmatch(chosen)

