"""Log files of ``metai-node serve``: one per process, rotated by size, whole lines only.

``serve.log`` holds serve's own records; ``<child>.log`` (``signer.log``, ``supernode.log``)
what each child printed on stdout and stderr, a line at a time, each line prefixed with the
time serve read it. A file is rotated before the line that would take it past the size limit
(``x.log`` becomes ``x.log.1``, ``x.log.1`` becomes ``x.log.2`` ... up to the number of backups,
the oldest dropped), so a line is never split between two files; a single line longer than the
limit gets a file of its own. Files are private to the node's user (serve runs with umask 077).
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

__all__ = ["LogFile", "clean_line", "serve_logger"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def clean_line(raw: bytes) -> str:
    """A line a child printed, as text: decoded (bad bytes replaced), colour codes and the line end removed."""
    return _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n")


class LogFile:
    """A size-rotated file of whole lines, safe to write from several threads.

    Parameters:
        path: the file (``x.log``); its folder is created.
        max_bytes: rotate before a line would take the file to this size or more.
        backups: how many rotated files to keep (``x.log.1`` .. ``x.log.N``).
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                            encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))

    def write(self, line: str) -> None:
        """Append ``line`` (one line: any line breaks in it are escaped), rotating first if needed."""
        text = line.replace("\r", "\\r").replace("\n", "\\n")
        self.handler.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"}))

    def close(self) -> None:
        """Close the file."""
        self.handler.close()


def serve_logger(path: Path, max_bytes: int, backups: int) -> logging.Logger:
    """The logger of serve itself, writing to ``path`` (rotated like :class:`LogFile`).

    Not to stderr: a serve that cannot start says so there in one line, which the journal keeps.
    Its handlers are replaced on every call, so serve started twice in one process logs once.
    """
    logger = logging.getLogger("metai.node.serve")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    return logger
