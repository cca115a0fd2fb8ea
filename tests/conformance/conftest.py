"""Shared fixtures: run the conformance suite against an in-process verifier."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import free_port  # noqa: F401 - used by the suite's tests
from werkzeug.serving import make_server

from tokenguard.conformance.model import Result
from tokenguard.conformance.runner import collect, parser


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Serve a WSGI app on a free loopback port; yields a starter returning its base URL."""
    servers = []

    def start(app: Any) -> str:
        port = free_port()
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_suite(*argv: str) -> list[Result]:
    return collect(parser().parse_args(list(argv)))


def failed(results: list[Result]) -> set[str]:
    return {r.id for r in results if r.outcome == "fail"}
