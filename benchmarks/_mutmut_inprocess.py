"""pytest plugin for mutation runs (``-p benchmarks._mutmut_inprocess``): the ingest works in-process.

mutmut learns which tests reach a function by recording calls in the test's own process. The
ingest de-identifies in worker processes, so a test that ingests a file (every planted-marker
test of the de-identification) was never associated with the functions it exercises there, and
their mutants were judged by the in-process tests alone. Forcing one worker (the ingest then
works in its own process, as ``--workers 1`` does) makes those calls visible. Only the mutation
benchmark loads this plugin; ``make test`` never does.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Wrap the ingest's task runner so that it always runs with one worker, in this process."""
    from node import ingest

    # node.ingest imports outcomes from node.ingest_pool; the name it calls is the one replaced.
    original = getattr(ingest, "outcomes")  # noqa: B009 (not re-exported, so mypy refuses the attribute)
    if getattr(original, "_in_process", False):
        return  # already wrapped (the fork server configured pytest before this worker)

    def in_process(*args: Any, **kwargs: Any) -> Any:
        kwargs["workers"] = 1
        return original(*args, **kwargs)

    in_process._in_process = True  # type: ignore[attr-defined]
    setattr(ingest, "outcomes", in_process)  # noqa: B010
