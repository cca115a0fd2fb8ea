"""Fetching an issuer's metadata and JWKS over real HTTP (issue 10, item 1): a total deadline per fetch,
however slowly the server trickles, a size cap, and nothing but a JSON object accepted."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokenguard.core.metadata import FetchError
from tokenguard.outbound import MAX_ABANDONED, http_fetch_json

TIMEOUT = 1.0
BOUND = TIMEOUT + 3.0  # "bounded, not hanging": the server below trickles for a minute


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        with contextlib.suppress(OSError):  # the fetcher hung up: that is the point of most tests here
            self.routes[self.path](self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def answer(body: bytes, status: int = 200, length: int | None = None, pause: float = 0.0) -> Callable[..., None]:
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not pause:
            h.wfile.write(body)
            return
        for byte in body:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(pause)

    return send


def trickled_headers(h: BaseHTTPRequestHandler) -> None:
    h.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(600):  # a header byte every 0.1 s: every read is quick, the whole takes a minute
        h.wfile.write(b"X")
        h.wfile.flush()
        time.sleep(0.1)


def chunked_forever(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"[" * 65536
    for _ in range(64):
        h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")


@pytest.fixture
def server() -> Iterator[str]:
    Handler.routes = {
        "/ok": answer(b'{"keys": []}'),
        "/trickle": answer(json.dumps({"keys": ["x" * 200]}).encode(), pause=0.1),
        "/headers": trickled_headers,
        "/big": answer(b"{}", length=10 * 1024 * 1024),
        "/chunked": chunked_forever,
        "/html": answer(b"<html>nope</html>"),
        "/array": answer(b"[1, 2]"),
        "/error": answer(b"{}", status=503),
        "/redirect": lambda h: (h.send_response(302), h.send_header("Location", "/ok"),
                                h.send_header("Content-Length", "0"), h.end_headers()),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def timed(fetch: Callable[[str], object], url: str) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(url)
    return str(caught.value), time.monotonic() - started


def test_a_good_answer(server: str) -> None:
    assert http_fetch_json(timeout=TIMEOUT)(server + "/ok") == {"keys": []}


@pytest.mark.parametrize("path", ["/trickle", "/headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(server: str, path: str) -> None:
    message, elapsed = timed(http_fetch_json(timeout=TIMEOUT), server + path)
    assert elapsed < BOUND, elapsed
    assert f"no complete answer from {server}{path} within 1 s" in message


@pytest.mark.parametrize(("path", "expected"), [
    ("/big", "larger than"),
    ("/chunked", "larger than"),
    ("/html", "non-JSON answer"),
    ("/array", "not a JSON object"),
    ("/error", "HTTP 503 from"),
    ("/redirect", "HTTP 302 from"),
])
def test_what_is_not_a_small_json_object_is_refused(server: str, path: str, expected: str) -> None:
    message, elapsed = timed(http_fetch_json(timeout=5.0, max_bytes=1 << 20), server + path)
    assert expected in message and server + path in message


def test_refused_connection_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message, _ = timed(http_fetch_json(timeout=TIMEOUT), f"http://127.0.0.1:{port}/jwks")
    assert message == f"ConnectionError fetching http://127.0.0.1:{port}/jwks"


def test_hanging_fetches_of_one_url_are_bounded_and_others_still_work(server: str) -> None:
    fetch = http_fetch_json(timeout=0.3)
    for _ in range(MAX_ABANDONED + 1):  # each leaves a helper reading the trickle for a while
        timed(fetch, server + "/headers")
    message, elapsed = timed(fetch, server + "/headers")
    assert "still hanging" in message and elapsed < 0.3  # refused at once: no more threads
    assert fetch(server + "/ok") == {"keys": []}
