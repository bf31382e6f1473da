"""A CT sinogram is rebuilt from its allow-list and still reads the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.raw_deid import DEIDENTIFICATION_NOTE, deidentify_raw
from raw_data import Sinogram, get_profile, make_patient, read_sinogram, scan_image, write_sinogram
from tasks.ct import scan_patients

PATIENT = PatientContext("MTP-0123456789", -40)
UIDS = UidMapper(b"k" * 32)
FMT = "metai-ct-sinogram"


def rebuilt(source: Path, tmp_path: Path, patient: PatientContext = PATIENT) -> Path:
    out = tmp_path / f"stored-{source.name}"
    out.write_bytes(deidentify_raw(FMT, source, patient, UIDS).content)
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    patient = make_patient(3)
    sino = scan_image(patient.image(64), patient.grid(64), get_profile("compact-head"), seed=7, source="head phantom")
    path = tmp_path_factory.mktemp("sinogram") / "scan.h5"
    write_sinogram(path, Sinogram(sino.data, sino.geometry, sino.profile, {**sino.provenance, "patient_id": "P-1"}))
    return path


@pytest.fixture
def scan(written: Path, tmp_path: Path) -> Path:
    """A fresh copy of a scanner-written sinogram, for one test to change."""
    path = tmp_path / "scan.h5"
    shutil.copyfile(written, path)
    return path


def test_stored_sinogram_reads_with_the_same_data_geometry_and_profile(scan: Path, tmp_path: Path) -> None:
    before, after = read_sinogram(scan), read_sinogram(rebuilt(scan, tmp_path))
    assert np.array_equal(after.data, before.data)
    assert after.geometry == before.geometry
    assert after.profile == before.profile  # a listed profile keeps its name and its own description
    kept = ("scanner_profile", "noise_seed", "dose_factor", "incident_flux", "noise", "mu_water_per_mm")
    assert {k: after.provenance[k] for k in kept} == {k: before.provenance[k] for k in kept}
    assert after.provenance["patient"] == PATIENT.pseudonym
    assert after.provenance["deidentification"] == DEIDENTIFICATION_NOTE
    assert {"source", "created_by", "patient_id"}.isdisjoint(after.provenance)


def test_the_ct_tasks_phantom_and_lesion_descriptions_pass_their_patterns(tmp_path: Path) -> None:
    patients = [make_patient(11, lesions=0), make_patient(12, lesions=2)]
    for i, sino in enumerate(scan_patients(patients, [1, 2])):
        path = tmp_path / f"task-{i}.h5"
        write_sinogram(path, sino)
        after = read_sinogram(rebuilt(path, tmp_path))
        assert after.provenance["phantom"] == sino.provenance["phantom"]
        assert after.provenance["lesion"] == sino.provenance["lesion"]
        assert after.provenance["synthetic"] == "true"


def test_provenance_values_that_fail_their_kind_are_dropped(scan: Path, tmp_path: Path) -> None:
    bad = {"noise_seed": "12; J. Doe", "dose_factor": "nan", "noise": "poisson, see Dr Who", "synthetic": "TRUE",
           "phantom": "ct_head seed=3 of Jane", "lesion": "none (Jane)", "scanner_profile": "our-ct-3",
           "created_at": "yesterday", "incident_flux": "1e5"}
    with h5py.File(scan, "r+") as f:
        f["provenance"].attrs.update(bad)
    after = read_sinogram(rebuilt(scan, tmp_path)).provenance
    assert after["incident_flux"] == "100000.0"  # a number written as text is kept, as a number
    assert set(after).isdisjoint(set(bad) - {"incident_flux"})


def test_an_unlisted_scanner_loses_its_name_and_description_but_keeps_its_numbers(scan: Path, tmp_path: Path) -> None:
    with h5py.File(scan, "r+") as f:
        f["scanner"].attrs.update({"name": "CT-7 Room 12 St Elsewhere", "description": "bought 2019 by Dr House"})
    after = read_sinogram(rebuilt(scan, tmp_path)).profile
    before = get_profile("compact-head")
    assert after is not None
    assert (after.name, after.description) == ("unlisted", "a scanner profile not listed in raw_data.scanners; "
                                               "its name and description were removed")
    assert (after.n_views, after.incident_flux, after.detector_blur_fwhm) == (
        before.n_views, before.incident_flux, before.detector_blur_fwhm)


def test_geometry_written_as_text_is_stored_as_numbers(scan: Path, tmp_path: Path) -> None:
    with h5py.File(scan, "r+") as f:
        f["geometry"].attrs["n_views"] = "720"  # another writer's text; the reader converts it
        f["geometry"].attrs["pixel_size_mm"] = "4.0"
    stored = rebuilt(scan, tmp_path)
    with h5py.File(stored, "r") as f:
        assert f["geometry"].attrs["n_views"] == 720
        assert f["geometry"].attrs["n_views"].dtype.kind == "i"
        assert f["geometry"].attrs["pixel_size_mm"].dtype.kind == "f"
    assert read_sinogram(stored).geometry == read_sinogram(scan).geometry


def test_a_sinogram_without_provenance_still_records_the_pseudonym(scan: Path, tmp_path: Path) -> None:
    with h5py.File(scan, "r+") as f:
        del f["provenance"]
        del f["scanner"]
    after = read_sinogram(rebuilt(scan, tmp_path))
    assert after.profile is None
    assert after.provenance == {"patient": PATIENT.pseudonym, "deidentification": DEIDENTIFICATION_NOTE}


def test_the_rebuild_is_deterministic(scan: Path) -> None:
    first = deidentify_raw(FMT, scan, PATIENT, UIDS).content
    assert deidentify_raw(FMT, scan, PATIENT, UIDS).content == first


def test_a_date_that_cannot_be_shifted_is_refused_without_naming_it(scan: Path) -> None:
    with h5py.File(scan, "r+") as f:
        f.attrs["created_at"] = "9999-12-30T10:00:00+00:00"
    with pytest.raises(DeidentificationError, match=r"^/@created_at: a date cannot be shifted by 5 days") as err:
        deidentify_raw(FMT, scan, PatientContext("MTP-1", 5), UIDS)
    assert "9999-12-30" not in str(err.value)


def test_soft_links_inside_the_file_are_read_and_links_to_other_files_are_not(scan: Path, tmp_path: Path) -> None:
    other = scan.parent / "elsewhere.h5"
    with h5py.File(other, "w") as f:
        f.create_group("scanner").attrs.update({**get_profile("compact-head").to_dict(), "name": "MARK-EXT-0001"})
    with h5py.File(scan, "r+") as f:
        f.move("geometry", "moved_geometry")
        f["geometry"] = h5py.SoftLink("/moved_geometry")
        del f["scanner"]
        f["scanner"] = h5py.ExternalLink(other.name, "/scanner")
    before = read_sinogram(scan)
    assert before.profile is not None
    assert before.profile.name == "MARK-EXT-0001"  # h5py itself follows the external link
    stored = rebuilt(scan, tmp_path)
    after = read_sinogram(stored)
    assert after.geometry == before.geometry
    assert after.profile is None  # the node never opens a file it was not given
    assert b"MARK-EXT-0001" not in stored.read_bytes()


def test_a_required_group_in_another_file_is_refused(scan: Path) -> None:
    other = scan.parent / "elsewhere.h5"
    with h5py.File(scan, "r+") as f, h5py.File(other, "w") as o:
        f.copy(f["geometry"], o, name="geometry")
        del f["geometry"]
        f["geometry"] = h5py.ExternalLink(other.name, "/geometry")
    read_sinogram(scan)  # valid for h5py, which follows the link
    with pytest.raises(DeidentificationError, match=r"^/geometry, /geometry/angles_rad cannot be read from the file "
                       r"itself \(absent, or a link to another file"):
        deidentify_raw(FMT, scan, PATIENT, UIDS)
