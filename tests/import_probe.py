"""What a fresh interpreter has loaded after some imports: for tests of start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loaded_after(imports: Sequence[str], watched: Sequence[str]) -> list[str]:
    """Of ``watched``, the modules a new Python process holds after importing ``imports`` (sorted)."""
    code = (f"import json, sys, {', '.join(imports)}\n"
            f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout))
