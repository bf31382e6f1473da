"""Synthetic records: what is written, that a node ingests it, and that loading refuses bad records."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
import torch

from contracts.datause import Kind
from node.deid import DeidPolicy, PatientContext, UidMapper
from node.formats import deidentify, parse
from node.ingest import read_sidecar
from raw_data import (
    Sinogram,
    coil_sensitivities,
    get_profile,
    make_patient,
    read_sinogram,
    scan_image,
    simulate_kspace,
    write_ismrmrd,
    write_sinogram,
)
from tasks import Task, TaskDataError, get_task, write_labels_csv
from tasks.preprocess import attenuation_to_hu
from tasks.synthetic import balanced_patients, fake_patient_ids
from tests.tasks.conftest import IMAGE, KSPACE, RECORD_SEED, RECORDS, SINOGRAM, WRITTEN_FORMAT

Written = dict[str, list[tuple[Path, int]]]
CODES = [SINOGRAM, IMAGE, KSPACE]


@pytest.fixture(scope="module")
def kspace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mr") / "kspace.h5"
    image = make_patient(1).image(32)
    write_ismrmrd(path, simulate_kspace(image, coil_sensitivities((32, 32), 2)))
    return path


@pytest.fixture(scope="module")
def other_scanner_sinogram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sinogram from the definition-like scanner: another fan, other distances."""
    patient = make_patient(2)
    path = tmp_path_factory.mktemp("other") / "definition.h5"
    write_sinogram(path, scan_image(patient.image(32), patient.grid(32), get_profile("definition-like"), seed=0))
    return path


def test_synthetic_examples_are_balanced(task: Task) -> None:
    inputs, labels = task.synthetic_examples(6, 11)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert inputs.dtype == torch.float32
    assert bool(torch.isfinite(inputs).all())


def test_other_seeds_give_other_examples(task: Task) -> None:
    first, _ = task.synthetic_examples(2, 1)
    second, _ = task.synthetic_examples(2, 2)
    assert not torch.equal(first, second)


def test_examples_need_a_positive_count(task: Task) -> None:
    with pytest.raises(TaskDataError, match="n is 0, expected at least 1 example"):
        task.synthetic_examples(0, 1)


@pytest.mark.parametrize("code", CODES)
def test_written_records_load_to_the_synthetic_examples_of_the_same_seed(code: str, written_records: Written) -> None:
    task = get_task(code)
    loaded = torch.stack([task.load_record(path, WRITTEN_FORMAT[code]) for path, _ in written_records[code]])
    expected, labels = task.synthetic_examples(RECORDS, RECORD_SEED)
    assert [label for _, label in written_records[code]] == labels.tolist()
    torch.testing.assert_close(loaded, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("code", "kind"), [(SINOGRAM, Kind.CT_SINOGRAM), (IMAGE, Kind.IMAGE), (KSPACE, Kind.MR_KSPACE)]
)
def test_node_recognises_each_record_with_its_patient(code: str, kind: Kind, written_records: Written) -> None:
    owners = []
    for path, _ in written_records[code]:
        parsed = parse(path, path.read_bytes())
        assert (parsed.format, parsed.kind) == (WRITTEN_FORMAT[code], kind)
        owners.append(parsed.local_patient_id)
    assert owners == fake_patient_ids(2) * 2


@pytest.mark.parametrize("code", CODES)
def test_record_stored_by_a_node_still_loads_the_same(code: str, written_records: Written, tmp_path: Path) -> None:
    task = get_task(code)
    path, _ = written_records[code][0]
    parsed = parse(path, path.read_bytes())
    stored = deidentify(parsed, PatientContext("MTP-0123456789", -30), UidMapper(bytes(16)), DeidPolicy())
    copy = tmp_path / f"stored{stored.suffix}"
    copy.write_bytes(stored.content)
    assert b"TEST-P0001" not in stored.content
    fmt = WRITTEN_FORMAT[code]
    torch.testing.assert_close(task.load_record(copy, fmt), task.load_record(path, fmt))


def test_written_dicom_is_a_ct_image_in_hounsfield_units(written_records: Written) -> None:
    path, _ = written_records[IMAGE][0]
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage == ds.SOPClassUID
    assert (ds.Modality, ds.PatientID, ds.Rows, ds.Columns) == ("CT", "TEST-P0001", 64, 64)
    assert [float(v) for v in ds.PixelSpacing] == [4.0, 4.0]
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    task = get_task(IMAGE)
    patients, _ = balanced_patients(RECORDS, RECORD_SEED, task.lesion_radius_mm, task.lesion_contrast_hu)
    truth = attenuation_to_hu(patients[0].image(64))
    assert float(np.median(np.abs(hu - truth))) < 10.0  # HU, FBP of a noisy scan against the phantom


def test_written_sinogram_names_its_scanner_and_phantom(written_records: Written) -> None:
    sinogram = read_sinogram(written_records[SINOGRAM][1][0])
    assert sinogram.data.shape == (90, 128)
    assert sinogram.profile is not None
    assert sinogram.profile.name == "compact-head-binned"
    assert sinogram.provenance["patient_id"] == "TEST-P0002"
    assert sinogram.provenance["synthetic"] == "true"
    assert "radius_mm" in sinogram.provenance["lesion"]


def test_labels_sidecar_is_read_by_the_node(written_records: Written, tmp_path: Path) -> None:
    folder = written_records[KSPACE][0][0].parent
    sidecar = folder / "labels.csv"
    write_labels_csv(sidecar, written_records[KSPACE])
    rows = read_sidecar(sidecar)
    assert {name: row.label for name, row in rows.items()} == {
        path.name: str(label) for path, label in written_records[KSPACE]
    }


@pytest.mark.parametrize(
    ("code", "other"),
    [(SINOGRAM, KSPACE), (IMAGE, KSPACE), (KSPACE, IMAGE), (KSPACE, SINOGRAM)],
)
def test_record_of_another_kind_is_refused_by_its_format(code: str, other: str, written_records: Written) -> None:
    path, _ = written_records[other][0]
    with pytest.raises(TaskDataError, match=f"task {code} reads .* records, not '{WRITTEN_FORMAT[other]}'"):
        get_task(code).load_record(path, WRITTEN_FORMAT[other])


@pytest.mark.parametrize(
    ("code", "other", "message"),
    [
        (SINOGRAM, KSPACE, "not a usable CT sinogram record: .*format"),
        (KSPACE, SINOGRAM, "not a usable ISMRMRD k-space record"),
        (IMAGE, KSPACE, "cannot be read as a DICOM image"),
    ],
)
def test_record_whose_content_is_another_kind_is_refused(
    code: str, other: str, message: str, written_records: Written
) -> None:
    path, _ = written_records[other][0]
    with pytest.raises(TaskDataError, match=message):
        get_task(code).load_record(path, WRITTEN_FORMAT[code])


@pytest.mark.parametrize("code", CODES)
def test_truncated_record_is_refused(code: str, written_records: Written, tmp_path: Path) -> None:
    path, _ = written_records[code][0]
    cut = tmp_path / path.name
    cut.write_bytes(path.read_bytes()[:600])
    with pytest.raises(TaskDataError):
        get_task(code).load_record(cut, WRITTEN_FORMAT[code])


@pytest.mark.parametrize("code", CODES)
def test_missing_record_is_refused(code: str, tmp_path: Path) -> None:
    with pytest.raises(TaskDataError):
        get_task(code).load_record(tmp_path / "gone.h5", WRITTEN_FORMAT[code])


def test_sinogram_with_several_slices_is_refused(written_records: Written, tmp_path: Path) -> None:
    one = read_sinogram(written_records[SINOGRAM][0][0])
    path = tmp_path / "stack.h5"
    write_sinogram(path, Sinogram(np.stack([one.data] * 3), one.geometry, one.profile, one.provenance))
    with pytest.raises(TaskDataError, match="sinogram holds 3 slices; this task reads one slice per record"):
        get_task(SINOGRAM).load_record(path, "metai-ct-sinogram")


def test_sinogram_of_another_scanner_is_refused(other_scanner_sinogram: Path) -> None:
    with pytest.raises(TaskDataError, match=r"source_to_isocenter_mm is 595, .* built for the compact-head scanner"):
        get_task(SINOGRAM).load_record(other_scanner_sinogram, "metai-ct-sinogram")


def test_image_task_reconstructs_a_sinogram_of_another_scanner(other_scanner_sinogram: Path) -> None:
    image = get_task(IMAGE).load_record(other_scanner_sinogram, "metai-ct-sinogram")
    assert image.shape == (1, 64, 64)
    assert abs(float(image[0, 28:36, 28:36].median())) < 0.5  # brain near the window centre


def test_mr_dicom_is_refused_by_the_image_task(written_records: Written, tmp_path: Path) -> None:
    ds = pydicom.dcmread(written_records[IMAGE][0][0])
    ds.Modality = "MR"
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    with pytest.raises(TaskDataError, match="Modality is 'MR', expected 'CT'"):
        get_task(IMAGE).load_record(path, "dicom")


def test_dicom_without_pixel_spacing_is_refused(written_records: Written, tmp_path: Path) -> None:
    ds = pydicom.dcmread(written_records[IMAGE][0][0])
    del ds.PixelSpacing
    path = tmp_path / "nospacing.dcm"
    ds.save_as(path)
    with pytest.raises(TaskDataError, match=r"PixelSpacing \(0028,0030\) is missing"):
        get_task(IMAGE).load_record(path, "dicom")


def test_kspace_with_non_square_pixels_is_refused(kspace_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "stretched.h5"
    shutil.copy(kspace_file, path)
    with h5py.File(path, "r+") as f:
        xml = f["dataset"]["xml"][0].decode()
        f["dataset"]["xml"][0] = xml.replace("<x>256.0</x>", "<x>300.0</x>").encode()
    with pytest.raises(TaskDataError, match="square pixels are required"):
        get_task(KSPACE).load_record(path, "ismrmrd")


def test_kspace_of_any_coil_count_and_matrix_loads(kspace_file: Path) -> None:
    image = get_task(KSPACE).load_record(kspace_file, "ismrmrd")
    assert image.shape == (1, 64, 64)


def test_load_records_keeps_the_good_and_reports_the_bad(written_records: Written) -> None:
    task = get_task(SINOGRAM)
    (good, _), (wrong, _) = written_records[SINOGRAM][0], written_records[KSPACE][0]
    result = task.load_records([(good, "metai-ct-sinogram"), (wrong, "ismrmrd"), (good, "metai-ct-sinogram")])
    assert result.inputs.shape == (2, 1, 90, 128)
    assert result.loaded == [0, 2]
    assert [(path, "not 'ismrmrd'" in reason) for path, reason in result.rejected] == [(wrong, True)]


def test_patient_ids_must_fit_dicom(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=re.escape("patient id 'A\\\\B' is unusable")):
        get_task(IMAGE).write_synthetic_records(tmp_path, 1, 0, ["A\\B"])
    assert list(tmp_path.iterdir()) == []
