"""A WSGI environ as an :class:`~tokenguard.web.adapters.Incoming` sub-request (the WSGI serving front)."""

from __future__ import annotations

from typing import Any

from tokenguard.web.adapters import Incoming


class EnvironHeaders:
    """Header fields of a WSGI environ. WSGI folds repeated fields into one comma-joined value."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def values(self, name: str) -> tuple[str, ...]:
        key = "HTTP_" + name.upper().replace("-", "_")
        value = self.environ.get(key if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH") else key[5:])
        return () if value is None else (str(value),)


def incoming_from_environ(environ: dict[str, Any]) -> Incoming:
    path = environ.get("PATH_INFO", "")
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or path
    return Incoming(method=str(environ.get("REQUEST_METHOD", "GET")), path=path, target=str(target),
                    scheme=str(environ.get("wsgi.url_scheme", "http")), peer=environ.get("REMOTE_ADDR"),
                    headers=EnvironHeaders(environ))
