"""The public DICOM test files on this machine: pydicom's own and those pydicom-data installs.

``pydicom.data.get_testdata_files`` would also fetch the files missing here from GitHub; the
tests send nothing beyond loopback, so they list the installed files only.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.data.data_manager import DATA_ROOT, DataTypes, external_data_sources


def installed_test_files(pattern: str = "*.dcm") -> list[str]:
    """Paths of the installed public test data sets whose names match ``pattern``, sorted."""
    paths = [str(p) for p in (Path(DATA_ROOT) / "test_files").glob(pattern)]
    for source in external_data_sources().values():
        paths.extend(source.get_paths(pattern, DataTypes.DATASET))
    return sorted(paths)
