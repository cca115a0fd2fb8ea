"""Log lines leave in batches (one write per batch, not per decision), in order, and none is lost."""

from __future__ import annotations

import io
import logging
import os
import threading

import pytest
from support import wait_for

from tokenguard.web.logs import BatchedStreamHandler, configure_logging, decisions_log, event, log, log_decision


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
            log_decision(f'{{"n":{n}}}')

    threads = [threading.Thread(target=write, args=(k * 500,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: stream.getvalue().count("\n") == 2000, "every line to be written")
    lines = stream.getvalue().splitlines()
    assert sorted(int(line[5:-1]) for line in lines) == list(range(2000))
    for k in range(4):  # each thread's lines in the order it logged them
        mine = [int(line[5:-1]) for line in lines if k * 500 <= int(line[5:-1]) < (k + 1) * 500]
        assert mine == sorted(mine)
    assert stream.writes < 200  # batches, not one write per line


def test_a_warning_is_written_at_once_and_close_writes_the_rest(stream: CountingStream) -> None:
    handler = log.handlers[0]
    assert isinstance(handler, BatchedStreamHandler)
    handler.interval = 3600.0  # no timer flush during this test
    log_decision('{"event":"decision","n":1}')
    event("config_rejected", logging.ERROR, error="bad")
    text = stream.getvalue()
    assert text.splitlines() == ['{"event":"decision","n":1}', '{"event":"config_rejected","error":"bad"}']
    log_decision('{"event":"decision","n":2}')
    assert stream.getvalue() == text
    log_decision('{"event":"decision","result":"error"}', urgent=True)  # failed closed: written at once
    assert stream.getvalue().endswith('{"event":"decision","n":2}\n{"event":"decision","result":"error"}\n')
    log_decision('{"event":"decision","n":3}')
    handler.close()
    assert stream.getvalue().endswith('{"event":"decision","n":3}\n')


def test_a_handler_of_the_operators_gets_decisions_through_logging(stream: CountingStream,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    decisions_log.addHandler(caplog.handler)
    try:
        log_decision('{"event":"decision","reason":"ok"}')
    finally:
        decisions_log.removeHandler(caplog.handler)
    assert '"reason":"ok"' in caplog.text
    wait_for(lambda: '"reason":"ok"' in stream.getvalue(), "the line in tokenguard's own stream too")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_does_not_write_its_parents_pending_lines(stream: CountingStream, tmp_path) -> None:
    handler = log.handlers[0]
    assert isinstance(handler, BatchedStreamHandler)
    handler.interval = 3600.0
    log_decision('{"from":"parent"}')
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            log_decision('{"from":"child"}')
            handler.flush()
            os._exit(0 if stream.getvalue() == '{"from":"child"}\n' else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    handler.flush()
    assert stream.getvalue() == '{"from":"parent"}\n'
