"""``python -m raw_data info`` on damaged files: the reader's own error, never a "bug" line."""

from __future__ import annotations

from pathlib import Path

import pytest

from raw_data import get_profile, make_patient, scan_image, write_sinogram
from raw_data.__main__ import main
from tests.raw_data.mutations import mutants, regions

MUTANTS = 400


@pytest.fixture(scope="module")
def sinogram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("info") / "scan.h5"
    patient = make_patient(1)
    write_sinogram(path, scan_image(patient.image(32), patient.grid(32), get_profile("compact-head"), seed=1))
    return path


def test_info_on_damaged_sinograms_names_the_damage(
    sinogram: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bugs: list[str] = []
    refused = 0
    for mutant in mutants(sinogram.read_bytes(), regions(sinogram), seed=7, count=MUTANTS):
        path = tmp_path / "mutant.h5"
        path.write_bytes(mutant.data)
        status = main(["info", str(path)])
        err = capsys.readouterr().err
        refused += status != 0
        if status not in (0, 2) or "unexpected" in err or len(err.splitlines()) > 1:
            bugs.append(f"{mutant.label}: exit {status}: {err.strip()}")
    assert refused > MUTANTS // 4  # the corpus does damage files: most of it must be refused
    assert bugs == []
