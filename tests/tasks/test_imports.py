"""Every round's ClientApp and the ServerApp import the tasks: they load only what training needs."""

from __future__ import annotations

from tests.import_probe import loaded_after


def test_importing_the_tasks_loads_neither_pydicom_nor_scipy_nor_skimage() -> None:
    # Each costs a fraction of a second in every app process of every round; only the CT image
    # task's DICOM reader (pydicom) and the robustness metrics (SciPy, scikit-image) use them.
    assert loaded_after(["tasks", "node.client_app", "coordinator.server_app"], ["pydicom", "scipy", "skimage"]) == []
