"""Print a finished mutmut run's mutants as JSON: name, module, verdict, diff (or reset its survivors).

Run by :mod:`benchmarks.mutation` inside a group's sandbox (the directory holding its
``pyproject.toml`` and ``mutants/``), because mutmut reads its configuration and results from
the current directory. Uses mutmut's own readers, so the verdicts and diffs are exactly the
ones ``mutmut results`` and ``mutmut show`` print. With ``--reset-survivors`` it clears the verdict
of every surviving or timed-out mutant instead (mutmut then judges them again on its next run) and prints how
many it cleared.
"""

from __future__ import annotations

import json
import sys

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files


def export() -> list[dict[str, str]]:
    """Return every mutant of the run in this directory with its verdict and diff."""
    found = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in sorted(data.exit_code_by_key.items()):
            found.append(
                {
                    "name": name,
                    "module": str(path),
                    "status": status_by_exit_code[exit_code],
                    "diff": get_diff_for_mutant(name, path=path),
                }
            )
    return found


def reset_survivors() -> int:
    """Clear the verdict of every mutant that survived or timed out; return how many were cleared.

    A timeout is judged again too: on a loaded machine a test that polls can go over mutmut's CPU
    limit, and such a verdict says nothing about whether a test would have failed.
    """
    cleared = 0
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        survivors = [name for name, code in data.exit_code_by_key.items()
                     if code is not None and status_by_exit_code[code] in ("survived", "timeout")]
        for name in survivors:
            data.exit_code_by_key[name] = None
        if survivors:
            data.save()
        cleared += len(survivors)
    return cleared


if __name__ == "__main__":
    if sys.argv[1:] == ["--reset-survivors"]:
        print(reset_survivors())
    else:
        json.dump(export(), sys.stdout)
