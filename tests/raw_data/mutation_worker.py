"""Worker for the mutation tests: read each file named on stdin, print how the read ended.

Usage: ``python -m tests.raw_data.mutation_worker MODULE:FUNCTION CAP_BYTES``. Prints
``"ready"`` once imported, then one JSON string per file: ``"read"``, ``"<class>: <message>"``
for a documented error, or ``"ESCAPED <class>: <message>"`` for anything else.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys

from tests.raw_data.mutations import documented_errors


def _cap_address_space(extra: int) -> None:
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = current + extra if hard == resource.RLIM_INFINITY else min(current + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def main() -> None:
    """Serve read requests until stdin closes."""
    module, function = sys.argv[1].split(":")
    reader = getattr(importlib.import_module(module), function)
    allowed = documented_errors(reader)
    _cap_address_space(int(sys.argv[2]))
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        try:
            reader(line.rstrip("\n"))
            outcome = "read"
        except allowed as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the finding the test looks for: report it, keep going
            outcome = f"ESCAPED {type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
