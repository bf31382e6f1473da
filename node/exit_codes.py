"""The exit codes of every command line of the project (``metai-node``, ``python -m deploy``, the signing agent).

One table, so a script driving any of them can tell the outcomes apart the same way.
(``python -m raw_data``, a library's own tool that imports no other package, exits 2 on bad
input and 1 on a bug.)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means."""

    #: Done, everything as asked.
    OK = 0
    #: Nothing done: an error, reported as one ``error: ...`` line on stderr.
    FAILED = 1
    #: Done in part: some inputs were refused and listed with their reasons (``ingest``,
    #: ``import-pacs``). Click's usage errors (an unknown option, a value not among the
    #: choices) exit with 2 too, before anything is done.
    PARTIAL = 2
    #: Stopped by Ctrl-C (SIGINT), as a shell reports it.
    INTERRUPTED = 130
