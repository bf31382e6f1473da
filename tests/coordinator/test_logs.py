"""The service's logs: JSON lines written by a thread of their own, so a blocked write never holds up a request."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from coordinator.core import logs


class BlockedStream(io.StringIO):
    """A stream whose writes wait until released, as a write to a disk the kernel is flushing does."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        assert self.release.wait(30), "the test never released the stream"
        return super().write(text)


@pytest.fixture
def loggers() -> Iterator[None]:
    names = ("metai", "uvicorn", "uvicorn.error")
    kept = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
            for n in names}
    yield
    for name, (handlers, level, propagate) in kept.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.mark.usefixtures("loggers")
def test_a_log_call_returns_while_the_write_is_blocked_and_every_line_is_written_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = BlockedStream()
    monkeypatch.setattr(sys, "stderr", stream)
    writer = logs.configure(json_lines=True)
    log = logging.getLogger("metai.coordinator.access")
    for n in range(50):  # each returns although nothing can be written yet
        log.info("GET /v1/consents %d", n, extra={"status": 200, "ms": 0.3})
    try:
        raise ValueError("a failure with a traceback")
    except ValueError:
        log.exception("a request failed")
    assert stream.getvalue() == ""
    stream.release.set()
    writer.stop()  # writes what is queued
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines[:50]] == [f"GET /v1/consents {n}" for n in range(50)]
    assert {(line["status"], line["ms"], line["logger"], line["level"]) for line in lines[:50]} == {
        (200, 0.3, "metai.coordinator.access", "info")}
    assert lines[50]["level"] == "error"
    assert "ValueError: a failure with a traceback" in lines[50]["exception"]


@pytest.mark.usefixtures("loggers")
def test_arguments_are_taken_when_logged_not_when_written(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = BlockedStream()
    monkeypatch.setattr(sys, "stderr", stream)
    writer = logs.configure(json_lines=False)
    state = ["before"]
    logging.getLogger("metai.test").info("state %s", state)
    state[0] = "after"
    stream.release.set()
    writer.stop()
    assert "state ['before']" in stream.getvalue()
