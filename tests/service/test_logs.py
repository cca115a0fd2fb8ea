"""Log lines leave in batches (one write per batch, not per decision), in order, and none is lost."""

from __future__ import annotations

import io
import json
import logging
import os
import threading

import pytest
from support import wait_for

from tokenguard.web.logs import BatchedStreamHandler, configure_logging, decisions_log, event, log, log_decision


def fields(text: str, *names: str) -> list[dict[str, object]]:
    """Each line's fields (without the ``ts`` and ``level`` every line carries, checked here)."""
    out = []
    for line in text.splitlines():
        parsed = json.loads(line)
        assert set(parsed) >= {"ts", "level"}, line
        out.append({k: v for k, v in parsed.items() if k not in ("ts", "level")})
    return out


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> CountingStream:
    counting = CountingStream()
    monkeypatch.setattr("sys.stderr", counting)
    configure_logging("info")
    yield counting
    configure_logging("info")  # closes the test's handler (its flusher thread stops)


def test_decision_lines_leave_in_order_in_few_writes(stream: CountingStream) -> None:
    def write(start: int) -> None:
        for n in range(start, start + 500):
            log_decision({"n": n})

    threads = [threading.Thread(target=write, args=(k * 500,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: stream.getvalue().count("\n") == 2000, "every line to be written")
    numbers = [int(line["n"]) for line in fields(stream.getvalue())]  # type: ignore[call-overload]
    assert sorted(numbers) == list(range(2000))
    for k in range(4):  # each thread's lines in the order it logged them
        mine = [n for n in numbers if k * 500 <= n < (k + 1) * 500]
        assert mine == sorted(mine)
    assert stream.writes < 200  # batches, not one write per line


def test_a_warning_is_written_at_once_and_close_writes_the_rest(stream: CountingStream) -> None:
    handler = log.handlers[0]
    assert isinstance(handler, BatchedStreamHandler)
    handler.interval = 3600.0  # no timer flush during this test
    log_decision({"event": "decision", "n": 1})
    event("config_rejected", logging.ERROR, error="bad")
    text = stream.getvalue()
    assert fields(text) == [{"event": "decision", "n": 1}, {"event": "config_rejected", "error": "bad"}]
    log_decision({"event": "decision", "n": 2})
    assert stream.getvalue() == text
    log_decision({"event": "decision", "result": "error"}, urgent=True)  # failed closed: written at once
    assert fields(stream.getvalue())[-2:] == [{"event": "decision", "n": 2}, {"event": "decision", "result": "error"}]
    log_decision({"event": "decision", "n": 3})
    handler.close()
    assert fields(stream.getvalue())[-1] == {"event": "decision", "n": 3}


def test_an_engine_reconfiguring_logging_never_strands_a_line(stream: CountingStream) -> None:
    """uvicorn's Config runs logging.config.dictConfig, which closes every handler there is: the server's
    "listening" and reload lines then waited forever in a closed handler's batch (no flusher runs)."""
    import logging.config

    from tokenguard.serving.uvicorn import LOG_CONFIG

    logging.config.dictConfig(LOG_CONFIG)  # what uvicorn.Config does in the master
    event("listening", logging.INFO, listen="127.0.0.1:1")
    assert fields(stream.getvalue()) == [{"event": "listening", "listen": "127.0.0.1:1"}]


def test_a_handler_of_the_operators_gets_decisions_through_logging(stream: CountingStream,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    decisions_log.addHandler(caplog.handler)
    try:
        log_decision({"event": "decision", "reason": "ok"})
    finally:
        decisions_log.removeHandler(caplog.handler)
    assert '"reason":"ok"' in caplog.text
    wait_for(lambda: '"reason":"ok"' in stream.getvalue(), "the line in tokenguard's own stream too")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_does_not_write_its_parents_pending_lines(stream: CountingStream, tmp_path) -> None:
    handler = log.handlers[0]
    assert isinstance(handler, BatchedStreamHandler)
    handler.interval = 3600.0
    log_decision({"from": "parent"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            log_decision({"from": "child"})
            handler.flush()
            os._exit(0 if fields(stream.getvalue()) == [{"from": "child"}] else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    handler.flush()
    assert fields(stream.getvalue()) == [{"from": "parent"}]
