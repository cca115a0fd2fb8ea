"""tokenguard's log lines: one JSON object each, never a token, a proof, a key or a secret.

Every line starts with ``ts`` (ISO 8601, UTC, milliseconds) and ``level``. tokenguard's own lines are
logged as dicts (``event`` plus fields) and become the object itself; a line of another library or of the
serving engine (gunicorn, uvicorn) becomes ``{"ts", "level", "logger", "message"}``. One
:class:`JsonFormatter` does it for every process: the server's master and its workers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from tokenguard.core.jwks import FetchEvent

log = logging.getLogger("tokenguard")
decisions_log = logging.getLogger("tokenguard.decision")
lifecycle_log = logging.getLogger("tokenguard.lifecycle")  # start-up and reloads: shown at every log level
LEVELS = ("debug", "info", "warning", "error", "critical")
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode  # built once, not per line


class Fields(dict[str, Any]):
    """A line's fields: merged into the line by :class:`JsonFormatter`, JSON text for any other handler."""

    def __str__(self) -> str:
        return _encode(self)


class JsonFormatter(logging.Formatter):
    """A record as one JSON line; a dict message is the line's fields, anything else its ``message``."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - stdlib name
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": self.formatTime(record), "level": record.levelname.lower()}
        if isinstance(record.msg, dict):
            line.update(record.msg)
        else:
            if not record.name.startswith("tokenguard"):
                line["logger"] = record.name
            line["message"] = record.getMessage()
            if record.exc_info and not record.name.startswith("tokenguard"):
                line["exception"] = self.formatException(record.exc_info)  # the engine's own failures
        return _encode(line)


def configure_logging(level: str = "info") -> None:
    """tokenguard's loggers write JSON lines to stderr at ``level`` (validated by the settings)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("tokenguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    lifecycle_log.setLevel(logging.INFO)


def json_handlers(logger: logging.Logger) -> None:
    """Make an engine's own logger (gunicorn's error log, uvicorn's) write tokenguard's JSON lines."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One operator-facing event line, e.g. ``event("config_rejected", logging.ERROR, error=...)``."""
    if log.isEnabledFor(level):
        log.log(level, Fields(event=name, **fields))


def announce(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """A line about the server's life (listening, config reloaded or rejected), whatever the log level."""
    lifecycle_log.log(level, Fields(event=name, **fields))


def key_fetch(fetch: FetchEvent) -> None:
    """A line for every failed fetch of an issuer's keys, and one when fetching works again."""
    if not fetch.ok:
        event("jwks_fetch_failed", logging.WARNING, issuer=fetch.issuer, error=fetch.error,
              failures=fetch.failures, retry_in_s=round(fetch.retry_in or 0, 1))
    elif fetch.recovered:
        event("jwks_fetch_recovered", logging.INFO, issuer=fetch.issuer, after_failures=fetch.failures)
    else:
        event("jwks_fetched", logging.DEBUG, issuer=fetch.issuer)
