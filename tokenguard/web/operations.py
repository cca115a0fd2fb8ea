"""The operator endpoints, whatever front serves them: ``/healthz`` (alive), ``/readyz`` (keys loaded,
replay store reachable: 200 or 503) and ``/metrics`` (Prometheus text, every worker's numbers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from tokenguard.core.verifier import Verifier
from tokenguard.web import metrics

TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    """One operator answer: status, content type and body (and the methods allowed, on a 405)."""

    status: int
    content_type: str
    body: bytes
    allow: str | None = None

    def header_bytes(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", self.content_type.encode("latin-1")),
                   (b"content-length", str(len(self.body)).encode("ascii"))]
        if self.allow is not None:
            headers.append((b"allow", self.allow.encode("latin-1")))
        return headers


def healthz(verifier: Verifier) -> Reply:
    return Reply(200, TEXT, b"ok\n")


def readyz(verifier: Verifier) -> Reply:
    ready, checks = verifier.readiness()
    body = json.dumps({"ready": ready, "checks": checks}) + "\n"
    return Reply(200 if ready else 503, "application/json", body.encode())


def metrics_text(verifier: Verifier) -> Reply:
    metrics.observe_replay(verifier.replay_health())  # the shared store's state, as this worker sees it
    body, content_type = metrics.exposition()
    return Reply(200, content_type, body)


OPERATIONS: dict[str, Callable[[Verifier], Reply]] = {"/healthz": healthz, "/readyz": readyz,
                                                       "/metrics": metrics_text}
NOT_FOUND = Reply(404, TEXT, b"not found\n")
NOT_ALLOWED = Reply(405, TEXT, b"method not allowed\n", allow="GET, HEAD")


def operator_reply(path: str, method: str, verifier: Verifier) -> Reply:
    """The answer to ``method path``: the endpoint's, 405 for a method other than GET/HEAD, else 404."""
    endpoint = OPERATIONS.get(path)
    if endpoint is None:
        return NOT_FOUND
    if method not in ("GET", "HEAD"):
        return NOT_ALLOWED
    return endpoint(verifier)
