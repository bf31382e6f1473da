"""An ISMRMRD file is rebuilt from its allow-list, reads and reconstructs the same, and keeps only checked values."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import typing
from pathlib import Path
from typing import Any

import h5py
import ismrmrd.xsd
import numpy as np
import pytest
from xsdata.models.datatype import XmlDate

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.raw_deid import HEADER_RULES, deidentify_raw
from raw_data import read_ismrmrd, reconstruct_kspace
from tests.node.raw_deid_planted import Plant, base_kspace_file, planted_ismrmrd

PATIENT = PatientContext("MTP-0123456789", -40)
UIDS = UidMapper(b"k" * 32)
X = ismrmrd.xsd


def rebuilt(source: Path, tmp_path: Path, patient: PatientContext = PATIENT) -> Path:
    out = tmp_path / f"stored-{source.name}"
    out.write_bytes(deidentify_raw("ismrmrd", source, patient, UIDS).content)
    return out


def header_of(path: Path) -> Any:
    with h5py.File(path, "r") as f:
        return X.CreateFromDocument(f["dataset/xml"][0])


def edit_header(path: Path, change: typing.Callable[[Any], None]) -> None:
    dset = ismrmrd.Dataset(str(path), "dataset", mode="r+")
    try:
        header = X.CreateFromDocument(dset.read_xml_header())
        change(header)
        del dset._file["dataset/xml"]
        dset.write_xml_header(X.ToXML(header).encode())
    finally:
        dset.close()


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Plant]:
    plant = Plant("I")
    planted_ismrmrd(tmp_path / "mr.h5", plant, "LOCAL-1")
    return tmp_path / "mr.h5", plant


def test_stored_file_reads_and_reconstructs_the_same(planted: tuple[Path, Plant], tmp_path: Path) -> None:
    source, _ = planted
    before, after = read_ismrmrd(source), read_ismrmrd(rebuilt(source, tmp_path))
    assert np.array_equal(after.data, before.data)
    assert np.array_equal(after.coil_maps, before.coil_maps)
    assert np.array_equal(after.reference, before.reference)
    assert (after.recon_shape, after.fov_mm, after.acceleration) == (before.recon_shape, before.fov_mm, 1)
    assert np.array_equal(reconstruct_kspace(after), reconstruct_kspace(before))


def test_reference_tool_output_reads_the_same_and_loses_its_institution(tmp_path: Path) -> None:
    tool = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
    assert tool is not None, "make test installs ismrmrd-tools"
    source = tmp_path / "sl.h5"
    subprocess.run([tool, "-m", "64", "-c", "4", "-o", str(source)], check=True, capture_output=True)
    stored = rebuilt(source, tmp_path)
    assert b"ISMRM Synthetic Imaging Lab" in source.read_bytes()
    assert b"ISMRM Synthetic Imaging Lab" not in stored.read_bytes()
    assert np.array_equal(reconstruct_kspace(read_ismrmrd(stored)), reconstruct_kspace(read_ismrmrd(source)))
    with h5py.File(stored, "r") as out, h5py.File(source, "r") as src:
        assert sorted(out["dataset"]) == ["coil_images", "csm", "data", "phantom", "xml"]
        assert np.array_equal(out["dataset/coil_images"][()], src["dataset/coil_images"][()])


def test_output_group_is_dataset_whatever_the_source_called_it(tmp_path: Path) -> None:
    plant = Plant("G")
    source = tmp_path / "mr.h5"
    planted_ismrmrd(source, plant, "LOCAL-1", group="MARK-GROUP-NAME-XQZ")
    stored = rebuilt(source, tmp_path)
    with h5py.File(stored, "r") as f:
        assert list(f) == ["dataset"]
    assert b"MARK-GROUP-NAME-XQZ" not in stored.read_bytes()
    assert np.array_equal(read_ismrmrd(stored).data, read_ismrmrd(source, dataset="MARK-GROUP-NAME-XQZ").data)


def test_acquisition_headers_keep_physical_fields_and_zero_the_vendor_ones(tmp_path: Path) -> None:
    source = tmp_path / "mr.h5"
    base_kspace_file(source)
    with h5py.File(source, "r+") as f:
        data = f["dataset/data"][()]
        head = data["head"]
        head["measurement_uid"] = 4711
        head["acquisition_time_stamp"] = np.arange(len(data)) + 5_000_000
        head["physiology_time_stamp"][:, 0] = 321
        head["patient_table_position"] = (1.5, -2.5, 100.0)
        head["user_int"] = 20240305
        head["user_float"] = 3.25
        data["head"] = head
        f["dataset/data"][...] = data
    with h5py.File(source, "r") as src, h5py.File(rebuilt(source, tmp_path), "r") as out:
        before, after = src["dataset/data"][()]["head"], out["dataset/data"][()]["head"]
    for name in ("measurement_uid", "user_int", "user_float"):
        assert before[name].all(), name  # planted
        assert not after[name].any(), name
    for name in before.dtype.names:
        if name not in ("measurement_uid", "user_int", "user_float"):
            assert np.array_equal(after[name], before[name]), name


def _user_parameters(header: Any) -> set[tuple[str, str]]:
    return {(p.name, str(p.value)) for kind in ("userParameterLong", "userParameterDouble", "userParameterString")
            for p in getattr(header.userParameters, kind)}


def test_user_parameters_keep_only_metai_values_that_pass_their_kind(tmp_path: Path) -> None:
    source = tmp_path / "mr.h5"
    base_kspace_file(source)
    phantom = "ct_head seed=4 lesions=1 scale=1.020 tilt_rad=0.0310"

    def plant(header: Any) -> None:
        s, long_ = X.userParameterStringType, X.userParameterLongType
        header.userParameters.userParameterString = [
            s(name="metai.noise_seed", value="123"), s(name="metai.noise_seed", value="12a"),
            s(name="metai.pattern", value="random"), s(name="metai.pattern", value="random, by Dr Who"),
            s(name="metai.phantom", value=phantom), s(name="metai.phantom", value="ct_head seed=4 of J. Doe"),
            s(name="SiemensProtocolNote", value="scan for Mrs Smith"), s(name="metai.source", value="J. Doe"),
        ]
        header.userParameters.userParameterLong = [long_(name="metai.noise_seed", value=7),
                                                  long_(name="VendorCounter", value=5)]

    edit_header(source, plant)
    kept = _user_parameters(header_of(rebuilt(source, tmp_path)))
    assert kept == {("metai.noise_seed", "123"), ("metai.noise_seed", "7"), ("metai.pattern", "random"),
                    ("metai.phantom", phantom), ("metai.patient", PATIENT.pseudonym),
                    ("metai.deidentification", kept_note(kept))}


def kept_note(kept: set[tuple[str, str]]) -> str:
    (note,) = [value for name, value in kept if name == "metai.deidentification"]
    assert note.startswith("MeTAI node raw allow-list")
    return note


def test_listed_values_are_kept_and_free_text_in_the_same_fields_dropped(tmp_path: Path) -> None:
    source = tmp_path / "mr.h5"
    base_kspace_file(source)

    def listed(header: Any) -> None:
        header.acquisitionSystemInformation.systemVendor = "SIEMENS"
        header.studyInformation = X.studyInformationType(bodyPartExamined="KNEE")
        header.sequenceParameters = X.sequenceParametersType(sequence_type="TSE", TR=[2000.0])

    edit_header(source, listed)
    header = header_of(rebuilt(source, tmp_path))
    assert header.acquisitionSystemInformation.systemVendor == "SIEMENS"
    assert header.studyInformation.bodyPartExamined == "KNEE"
    assert (header.sequenceParameters.sequence_type, header.sequenceParameters.TR) == ("TSE", [2000.0])

    def free_text(header: Any) -> None:
        header.acquisitionSystemInformation.systemVendor = "Siemens, leased by St Elsewhere"
        header.studyInformation.bodyPartExamined = "knee of J. Doe"
        header.sequenceParameters.sequence_type = "TSE for Mrs Smith"

    edit_header(source, free_text)
    header = header_of(rebuilt(source, tmp_path))
    assert header.acquisitionSystemInformation.systemVendor is None
    assert header.studyInformation.bodyPartExamined is None
    assert header.sequenceParameters.sequence_type is None


def test_a_measurement_dependency_of_an_unlisted_type_is_dropped_and_a_listed_one_mapped(tmp_path: Path) -> None:
    source = tmp_path / "mr.h5"
    base_kspace_file(source)

    def dependencies(header: Any) -> None:
        dep = X.measurementDependencyType
        header.measurementInformation = X.measurementInformationType(
            patientPosition=X.patientPositionType.HFS, measurementID="45160_1234567_7654321_6",
            measurementDependency=[dep(dependencyType="Noise", measurementID="45160_1234567_7654321_5"),
                                   dep(dependencyType="Dr Who's prescan", measurementID="45160_1234567_7654321_4")])

    edit_header(source, dependencies)
    info = header_of(rebuilt(source, tmp_path)).measurementInformation
    assert info.measurementID == UIDS.map("45160_1234567_7654321_6")
    assert [(d.dependencyType, d.measurementID) for d in info.measurementDependency] == [
        ("Noise", UIDS.map("45160_1234567_7654321_5"))]


def test_a_date_that_cannot_be_shifted_is_refused_without_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "mr.h5"
    base_kspace_file(source)
    edit_header(source, lambda h: setattr(h, "studyInformation", X.studyInformationType(
        studyDate=XmlDate(9999, 12, 30))))
    with pytest.raises(DeidentificationError, match=r"^studyInformation/studyDate: a date cannot be shifted by 5 days"):
        deidentify_raw("ismrmrd", source, PatientContext("MTP-1", 5), UIDS)


def test_the_rebuild_is_deterministic(planted: tuple[Path, Plant]) -> None:
    source, _ = planted
    first = deidentify_raw("ismrmrd", source, PATIENT, UIDS).content
    assert deidentify_raw("ismrmrd", source, PATIENT, UIDS).content == first


# ---------------------------------------------------------------------- the table covers the schema


def _schema_paths(cls: type, prefix: str = "") -> list[str]:
    """Every element path of an ``ismrmrd.xsd`` class, found by walking its dataclass fields."""
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}/{f.name}" if prefix else f.name
        paths.append(path)
        inner = hints[f.name]
        while typing.get_origin(inner) is not None:  # X | None, list[X]
            inner = next(a for a in typing.get_args(inner) if a is not type(None))
        if dataclasses.is_dataclass(inner):
            paths += _schema_paths(inner, path)  # type: ignore[arg-type]
    return paths


SCHEMA_PATHS = _schema_paths(X.ismrmrdHeader)


def _covered(path: str) -> bool:
    parts = path.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        ancestor = HEADER_RULES.get("/".join(parts[:depth]))
        if ancestor is not None and ancestor.action == "drop":
            return True  # dropped with everything inside
    return HEADER_RULES.get(path) is not None


def test_every_element_of_the_schema_has_a_row() -> None:
    assert len(SCHEMA_PATHS) > 150
    assert [p for p in SCHEMA_PATHS if not _covered(p)] == []


def test_every_row_names_an_element_of_the_schema() -> None:
    unused = [r.path for r in HEADER_RULES if not any(HEADER_RULES.get(p) is r for p in SCHEMA_PATHS)]
    assert unused == []


def test_arrays_behind_a_link_to_another_file_are_not_read(tmp_path: Path) -> None:
    source = tmp_path / "mr.h5"
    base_kspace_file(source)
    other = tmp_path / "elsewhere.h5"
    with h5py.File(source, "r") as f, h5py.File(other, "w") as o:
        o.create_dataset("csm", data=f["dataset/csm"][()])
        o["csm"].attrs["note"] = "MARK-EXT-0002"
    with h5py.File(source, "r+") as f:
        del f["dataset/csm"]
        f["dataset/csm"] = h5py.ExternalLink(other.name, "/csm")
    assert read_ismrmrd(source).coil_maps is not None  # h5py follows it for the reader
    stored = rebuilt(source, tmp_path)
    with h5py.File(stored, "r") as f:
        assert sorted(f["dataset"]) == ["data", "phantom", "xml"]
    assert read_ismrmrd(stored).coil_maps is None
