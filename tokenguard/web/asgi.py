"""The ASGI serving front: an ASGI ``http`` scope as an :class:`~tokenguard.web.adapters.Incoming`.

ASGI keeps what WSGI loses (docs/ARCHITECTURE.md, "a serving engine"): ``scope["headers"]`` is every
field line as sent, in arrival order, so two ``DPoP`` lines stay two values (RFC 9449 §4.3 (1)) and
``X_Forwarded_Proto`` stays a different name from ``X-Forwarded-Proto``; and nothing of the process
environment is ever part of a request. The auth endpoints are answered here with no framework in
between; ``/healthz``, ``/readyz`` and ``/metrics`` are answered here too (:mod:`.operations`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from tokenguard.core.decision import unavailable
from tokenguard.web.adapters import Incoming
from tokenguard.web.logs import event
from tokenguard.web.operations import TEXT, Reply, operator_reply
from tokenguard.web.service import AuthService

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Every auth answer is empty; the proxy reads only the status and the headers.
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
_AUTH_TRAILER = [(b"content-length", b"0"), (b"content-type", b"text/plain")]
_FAILED = {"type": "http.response.start", "status": 500,
           "headers": [(b"content-length", b"0"), (b"cache-control", b"no-store"),
                       (b"x-auth-error", b"internal_error")]}


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class AsgiHeaders:
    """Header fields of an ASGI scope: each field line its own value, names exactly as sent (lower-cased
    by the server, as HTTP names are case-insensitive, RFC 9110 §5.1), values as latin-1 text."""

    __slots__ = ("_fields",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        fields: dict[str, list[str]] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            known = fields.get(key)
            if known is None:
                fields[key] = [text]
            else:
                known.append(text)
        self._fields = fields

    def values(self, name: str) -> tuple[str, ...]:
        found = self._fields.get(name.lower())
        return () if found is None else tuple(found)

    def fields(self) -> Iterator[tuple[str, str]]:
        """Every field line (grouped by name), for tokenguard's own size limits."""
        for name, values in self._fields.items():
            for value in values:
                yield name, value


def incoming_from_scope(scope: Scope) -> Incoming:
    """The sub-request as an :class:`Incoming`: the request target exactly as sent (raw path and query)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string", b"")
    target = (raw_path + b"?" + query if query else raw_path).decode("latin-1")
    client = scope.get("client")
    return Incoming(method=scope["method"], path=scope["path"], target=target, scheme=scope.get("scheme", "http"),
                    peer=client[0] if client else None, headers=AsgiHeaders(scope["headers"]))


class AsgiApp:
    """tokenguard as an ASGI 3 application: the auth endpoints, the operator endpoints and lifespan.

    The decision is CPU work with no awaits, as in a sync worker: one request at a time per worker
    process, no thread hand-off on the hot path.
    """

    def __init__(self, service: AuthService, on_startup: Callable[[], None] | None = None) -> None:
        self.service = service
        self.on_startup = on_startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.service.handles(scope["path"]):
                await self._auth(scope, send)
            else:
                await self._operations(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # anything else (websocket) is not served: returning closes it

    async def _auth(self, scope: Scope, send: Send) -> None:
        try:
            answer = self.service.handle(incoming_from_scope(scope))
            headers = _encoded(answer.headers)
        except Exception as exc:  # fail closed with a reason, never a traceback (the service already guards)
            event("internal_error", logging.ERROR, error=type(exc).__name__, where="asgi")
            try:  # the configured fail-closed answer (server.fail_status), as for any failure
                answer = self.service.responder.render(unavailable("internal_error", type(exc).__name__))
                headers = _encoded(answer.headers)
            except Exception:
                await send(_FAILED)
                await send(_EMPTY_BODY)
                return
        await send({"type": "http.response.start", "status": answer.status, "headers": headers + _AUTH_TRAILER})
        await send(_EMPTY_BODY)

    async def _operations(self, scope: Scope, send: Send) -> None:
        try:
            reply = operator_reply(scope["path"], scope["method"], self.service.verifier)
        except Exception as exc:
            event("internal_error", logging.ERROR, error=type(exc).__name__, where=scope["path"][:64])
            reply = Reply(500, TEXT, b"internal error\n")
        body = b"" if scope["method"] == "HEAD" else reply.body
        await send({"type": "http.response.start", "status": reply.status, "headers": reply.header_bytes()})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.on_startup is not None:
                    self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
