"""Every round's ClientApp and the ServerApp import the tasks: they load only what training needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_tasks_loads_neither_pydicom_nor_scipy_nor_skimage() -> None:
    # Each costs a fraction of a second in every app process of every round; only the CT image
    # task's DICOM reader (pydicom) and the robustness metrics (SciPy, scikit-image) use them.
    code = ("import sys, tasks, node.client_app, coordinator.server_app\n"
            "print(sorted(m for m in ('pydicom', 'scipy', 'skimage') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
