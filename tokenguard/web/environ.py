"""A WSGI environ as an :class:`~tokenguard.web.adapters.Incoming` sub-request (the WSGI serving front).

WSGI keeps less than the request had: field names become ``HTTP_X_FOO`` (so ``X_Foo`` and ``X-Foo`` are
one key: the server must drop names with underscores, as gunicorn does by default and ``tokenguard serve``
configures explicitly), repeated fields are folded into one comma-joined value, and a server may build the
environ on a copy of the process environment (granian's WSGI mode does), so that a variable such as
``HTTP_X_ORIGINAL_URI`` or ``RAW_URI`` would stand in for what the proxy sent. What cannot be told apart
is refused, never guessed: a request whose environ carries a value the process environment also holds
under that key is marked, and the adapters refuse it (``environ_from_process``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from tokenguard.web.adapters import Incoming

#: Environ keys a server sets only when the request has them, so that a copied process variable shows.
_OPTIONAL_KEYS = ("RAW_URI", "REQUEST_URI")
_BODY_KEYS = {"HTTP_CONTENT_TYPE": "CONTENT_TYPE", "HTTP_CONTENT_LENGTH": "CONTENT_LENGTH"}


def process_variables(environment: Mapping[str, str]) -> dict[str, str]:
    """The process variables a WSGI server that copies its environment would pass off as request data."""
    return {key: value for key, value in environment.items() if key.startswith("HTTP_") or key in _OPTIONAL_KEYS}


_PROCESS = process_variables(os.environ)


class EnvironHeaders:
    """Header fields of a WSGI environ. WSGI folds repeated fields into one comma-joined value."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def values(self, name: str) -> tuple[str, ...]:
        key = "HTTP_" + name.upper().replace("-", "_")
        value = self.environ.get(_BODY_KEYS.get(key, key))
        return () if value is None else (str(value),)

    def fields(self) -> Iterator[tuple[str, str]]:
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-"), str(value)
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                yield key.replace("_", "-"), str(value)


def _request_target(environ: Mapping[str, Any]) -> str:
    """The request target as sent (gunicorn's ``RAW_URI``, ``REQUEST_URI``), else rebuilt from the decoded
    ``PATH_INFO`` (PEP 3333: latin-1 characters of the raw bytes) and ``QUERY_STRING``."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    path = quote(str(environ.get("PATH_INFO", "")).encode("latin-1", "replace"), safe="/;=:@!$&'()*+,~")
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def incoming_from_environ(environ: dict[str, Any], process: Mapping[str, str] = _PROCESS) -> Incoming:
    """The sub-request in ``environ``; ``process`` are the variables of the process environment that a
    server copying it would show (computed once at start-up)."""
    problem = None
    if process and any(environ.get(key) == value for key, value in process.items()):
        problem = "environ_from_process"
    return Incoming(method=str(environ.get("REQUEST_METHOD", "GET")), path=environ.get("PATH_INFO", ""),
                    target=_request_target(environ), scheme=str(environ.get("wsgi.url_scheme", "http")),
                    peer=environ.get("REMOTE_ADDR"), headers=EnvironHeaders(environ), problem=problem)
