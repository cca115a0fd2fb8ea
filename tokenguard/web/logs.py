"""tokenguard's log lines: one JSON object each, never a token, a proof, a key or a secret.

Every line starts with ``ts`` (ISO 8601, UTC, milliseconds) and ``level``. tokenguard's own lines are
logged as dicts (``event`` plus fields) and become the object itself; a line of another library or of the
serving engine (gunicorn, uvicorn) becomes ``{"ts", "level", "logger", "message"}``. One
:class:`JsonFormatter` does it for every process: the server's master and its workers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import weakref
from typing import Any, TextIO

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


class _Stamp:
    """ISO 8601 UTC times with milliseconds: one ``strftime`` per second, not per line."""

    second = -1
    text = ""

    @classmethod
    def of(cls, created: float) -> str:
        second = int(created)
        if second != cls.second:
            cls.second, cls.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{cls.text}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """A record as one JSON line; a dict message is the line's fields, anything else its ``message``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - stdlib name
        return _Stamp.of(record.created)

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


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """Lines go out in batches, one ``write(2)`` per batch: at most ``interval`` seconds after they were
    logged, at once for a warning or worse, and whenever ``limit`` characters are waiting (then on the
    caller's own time: a stalled log sink slows requests down rather than growing memory).

    With one decision line per request, a write per line cost a live worker ~110 µs a request on a local
    file (two workers appending to one file; docs/measurements.md §5); a batch costs each line ~1 µs.
    """

    def __init__(self, stream: TextIO, interval: float = 0.05, limit: int = 1 << 16) -> None:
        super().__init__(stream)
        self.interval, self.limit = interval, limit
        self._pending: list[str] = []
        self._size = 0
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None
        self._owner = 0
        _batched.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._add(line, record.levelno >= logging.WARNING)  # logging holds self.lock around emit

    def write_line(self, text: str, urgent: bool = False) -> None:
        """``text`` as one line, as ``emit`` would write a record whose formatted form it is."""
        with self.lock:  # type: ignore[union-attr]
            self._add(text + self.terminator, urgent)

    def _add(self, line: str, urgent: bool) -> None:
        if not self._owner:  # the first line in this process (or in a forked child)
            self._start()
        self._pending.append(line)
        self._size += len(line)
        # Closed (``logging.config.dictConfig`` closes every handler, e.g. an engine configuring its own
        # loggers) but still attached: no flusher runs any more, so every line goes out at once.
        if urgent or self._size >= self.limit or self._stopped.is_set():
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # the handler's own lock, held around emit too: lines stay in order
            lines, self._pending, self._size = self._pending, [], 0
            if lines and self.stream is not None:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (ValueError, OSError):  # the stream was closed under us (a replaced handler): the
                    pass  # lines have nowhere to go; a request must never fail over its log line

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _start(self) -> None:
        """The flusher thread of this process (a forked child has none of its parent's threads)."""
        with self.lock:  # type: ignore[union-attr]
            if self._owner:
                return
            self._owner = os.getpid()
            self._flusher = threading.Thread(target=self._flush_every_interval, name="tokenguard-log", daemon=True)
            self._flusher.start()

    def _flush_every_interval(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.flush()
            except Exception:  # a broken sink: the next line's own flush reports it through handleError
                continue

    def _forget_parents_lines(self) -> None:
        self._pending, self._size, self._owner = [], 0, 0  # the parent writes its own


_batched: weakref.WeakSet[BatchedStreamHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_batched):
        handler._forget_parents_lines()  # noqa: SLF001


os.register_at_fork(after_in_child=_after_fork_in_child)


JSON = JsonFormatter()


def log_decision(fields: dict[str, Any], urgent: bool = False) -> None:
    """One decision line (the caller checked the level); ``urgent`` (a request failed closed) is written
    at once, like a warning. By default decision lines go only to tokenguard's own handler and formatter:
    then the line is encoded here and goes straight into its batch, without a ``LogRecord`` (about a third
    of the line's cost); anything else -- a handler of the operator's or a test's, another formatter --
    gets it through ``logging`` as usual."""
    handlers = log.handlers
    if (not decisions_log.handlers and len(handlers) == 1 and decisions_log.propagate
            and isinstance(handlers[0], BatchedStreamHandler) and handlers[0].formatter is JSON
            and not log.filters and not decisions_log.filters):
        handlers[0].write_line(_encode({"ts": _Stamp.of(time.time()), "level": "info", **fields}), urgent)
    else:
        decisions_log.info(Fields(fields))
        if urgent:
            for handler in handlers:
                handler.flush()


def configure_logging(level: str = "info") -> None:
    """tokenguard's loggers write JSON lines to stderr at ``level`` (validated by the settings), in batches."""
    # What no tokenguard line shows, not looked up for every record (the logging HOWTO, "Optimization"):
    # with one decision line per request, the caller's file and line alone cost ~2.5 µs a request.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(JSON)
    root = logging.getLogger("tokenguard")
    for old in root.handlers:
        old.close()
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
