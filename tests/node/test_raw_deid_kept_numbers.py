"""Acquisition header numbers the allow-list keeps are copied bit for bit.

After the first review the node zeroes the vendor-defined acquisition fields (user_int, user_float,
idx.user, measurement_uid) because "an 8-bit array is text in all but name". The fields it keeps are
copied with their bits as they were, although their meaning leaves room for text:

- ``channel_mask`` is 1024 bits, one per receiver channel; a file with 2 channels has 1022 bits that
  mean nothing, room for 127 bytes per acquisition: those bits are now cleared;
- ``read_dir`` is a unit direction vector and ``patient_table_position`` a position in mm; twelve
  bytes of text make three finite float32 values, which are neither: such a file is now refused
  (quarantined with a reason naming the field), since the node cannot tell the true geometry.

Each case plants a 16- or 12-byte marker in the first acquisition of a valid 2-channel file,
ingests it through the real ``Ingestor`` and scans the node directory (``tests/node/leakscan.py``).
A refused file's quarantine copy is the hospital's own source, kept for its operator, so it is the
one file the scan of a refused case leaves aside (its reason file is scanned).
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.ingest import Ingestor
from node.raw_deid import SINOGRAM_RULES, FieldRule, deidentify_raw
from raw_data.scanners import PROFILES
from tests.node.ingest_corpus import write_kspace, write_sinogram
from tests.node.leakscan import describe, scan_tree

PATIENT = PatientContext("MTP-0123456789", -40)
UIDS = UidMapper(b"k" * 32)

# field -> (marker, where in the field's values, the field's type, refused)
CASES = {
    "channel_mask": ("MRKZQXCHANMASK16", slice(2, 4), "<u8", False),  # bits 128-255: channels a 2-channel coil lacks
    "read_dir": ("MRKZQXREADD3", slice(None), "<f4", True),
    "patient_table_position": ("MRKZQXTABLE4", slice(None), "<f4", True),
}


def _set_head(path: Path, field: str, values: np.ndarray, where: slice = slice(None), index: int = 0) -> None:
    with h5py.File(path, "r+") as f:
        data = f["dataset/data"][()]
        head = data["head"]
        if head[field].ndim == 1:  # one number per acquisition
            head[field][index] = values
        else:
            head[field][index][where] = values
        data["head"] = head
        f["dataset/data"][...] = data


@pytest.mark.parametrize("field", sorted(CASES))
def test_text_in_a_kept_acquisition_number_does_not_reach_the_store(
    field: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    marker, where, dtype, refused = CASES[field]
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "mr.h5"
    write_kspace(path, "REVIEW2-ACQ-1")
    _set_head(path, field, np.frombuffer(marker.encode(), dtype), where)
    assert marker.encode() in path.read_bytes()
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    if refused:
        assert (len(report.quarantined), len(report.ingested)) == (1, 0), report.quarantined
        assert f"head/{field}" in report.quarantined[0][1]
        hits = [h for h in scan_tree(node.dir, [marker])
                if not (h.file.startswith("quarantine/") and not h.file.endswith(".reason.txt"))]
    else:
        assert (report.quarantined, len(report.ingested)) == ([], 1), report.quarantined
        hits = scan_tree(node.dir, [marker])
    assert hits == [], f"acquisition {field} carried {marker!r} into the node:\n{describe(hits)}"


def _rebuilt_head(source: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "stored.h5"
    out.write_bytes(deidentify_raw("ismrmrd", source, PATIENT, UIDS).content)
    with h5py.File(out, "r") as f:
        return np.asarray(f["dataset/data"]["head"])


@pytest.fixture
def kspace(tmp_path: Path) -> Path:
    path = tmp_path / "mr.h5"
    write_kspace(path, "REVIEW2-ACQ-2")
    return path


def test_channel_mask_keeps_the_bits_of_the_coils_channels_only(kspace: Path, tmp_path: Path) -> None:
    everything = np.full(16, np.iinfo(np.uint64).max, dtype=np.uint64)
    _set_head(kspace, "channel_mask", everything)
    head = _rebuilt_head(kspace, tmp_path)
    # Two channels: bits 0 and 1 of the first word, in every acquisition; the writer's own mask (0b11) survives.
    assert head["channel_mask"][0].tolist() == [3] + [0] * 15
    assert set(head["channel_mask"][:, 0].tolist()) == {3}
    assert not head["channel_mask"][:, 1:].any()


def test_channel_mask_of_a_coil_with_more_channels_keeps_their_bits(kspace: Path, tmp_path: Path) -> None:
    _set_head(kspace, "available_channels", np.uint16(70))
    _set_head(kspace, "channel_mask", np.full(16, np.iinfo(np.uint64).max, dtype=np.uint64))
    head = _rebuilt_head(kspace, tmp_path)
    assert head["channel_mask"][0].tolist() == [2**64 - 1, 2**6 - 1] + [0] * 14


@pytest.mark.parametrize("field", ["read_dir", "phase_dir", "slice_dir"])
@pytest.mark.parametrize("vector", [(0.5, 0.5, 0.0), (np.nan, 0.0, 0.0), (np.inf, 0.0, 0.0), (1.0, 0.1, 0.0)])
def test_a_direction_that_is_not_a_unit_vector_refuses_the_file(
    field: str, vector: tuple[float, float, float], kspace: Path
) -> None:
    _set_head(kspace, field, np.array(vector, dtype=np.float32), index=3)
    with pytest.raises(DeidentificationError, match=rf"head/{field} of acquisition 3 \(1 of 16 acquisitions\) is not "
                       r"a unit vector"):
        deidentify_raw("ismrmrd", kspace, PATIENT, UIDS)


@pytest.mark.parametrize("vector", [(0.0, 0.0, 0.0), (0.6, 0.8, 0.0), (0.0, 0.0, -1.0005)])
def test_unit_and_zero_directions_are_kept_as_they_are(vector: tuple[float, float, float], kspace: Path,
                                                       tmp_path: Path) -> None:
    _set_head(kspace, "slice_dir", np.array(vector, dtype=np.float32))
    head = _rebuilt_head(kspace, tmp_path)
    assert head["slice_dir"][0].tobytes() == np.array(vector, dtype=np.float32).tobytes()


@pytest.mark.parametrize("field", ["position", "patient_table_position"])
@pytest.mark.parametrize("value", [10_000.5, -20_000.0, np.nan, -np.inf])
def test_a_position_beyond_ten_metres_or_not_finite_refuses_the_file(field: str, value: float, kspace: Path) -> None:
    _set_head(kspace, field, np.array([0.0, value, 0.0], dtype=np.float32), index=15)
    with pytest.raises(DeidentificationError, match=rf"head/{field} of acquisition 15 .* is not finite coordinates "
                       r"within \+-10000 mm"):
        deidentify_raw("ismrmrd", kspace, PATIENT, UIDS)


def test_positions_within_ten_metres_are_kept(kspace: Path, tmp_path: Path) -> None:
    _set_head(kspace, "position", np.array([-10_000.0, 12.5, 9_999.0], dtype=np.float32))
    head = _rebuilt_head(kspace, tmp_path)
    assert head["position"][0].tolist() == [-10_000.0, 12.5, 9_999.0]


@pytest.mark.parametrize("value", [np.nan, -1.0, 2e6])
def test_a_dwell_time_outside_its_range_refuses_the_file(value: float, kspace: Path) -> None:
    _set_head(kspace, "sample_time_us", np.float32(value))
    with pytest.raises(DeidentificationError, match=r"head/sample_time_us of acquisition 0 .* is not a finite dwell"):
        deidentify_raw("ismrmrd", kspace, PATIENT, UIDS)


# ---------------------------------------------------------------- the CT sinogram's kept numbers

NUMBERS = [rule for rule in SINOGRAM_RULES if rule.kind in ("integer", "real") and rule.action == "keep"]
LIMITED = [rule for rule in NUMBERS if rule.limits is not None]


def _text_number(kind: str) -> float | int:
    """A number whose bytes are text (eight letters as an int64, four as a float32)."""
    if kind == "integer":
        return int(np.frombuffer(b"MRKZQXNO", "<i8")[0])
    return float(np.frombuffer(b"MRKZ", "<f4")[0])


@pytest.fixture
def sinogram(tmp_path: Path) -> Path:
    path = tmp_path / "ct.h5"
    write_sinogram(path, "REVIEW2-SINO-1")
    with h5py.File(path, "r+") as f:
        # Every listed object and key present, so that every limited row is read.
        f["geometry"].attrs.update({"source_to_isocenter_mm": 541.0, "source_to_detector_mm": 949.0})
        f.create_group("scanner").attrs.update(PROFILES["lightspeed-like"].to_dict())
        f["provenance"].attrs.update({"noise_seed": "7", "phantom_seed": "11", "dose_factor": "0.5",
                                      "incident_flux": "200000.0", "mu_water_per_mm": "0.0192", "noise_std": "0.01"})
    return path


def _set_attr(path: Path, rule_path: str, value: object) -> None:
    obj_path, _, key = rule_path.partition("@")
    with h5py.File(path, "r+") as f:
        f[obj_path].attrs[key] = value


def test_every_kept_sinogram_number_has_a_physical_range() -> None:
    assert [rule.path for rule in NUMBERS] == [rule.path for rule in LIMITED]
    assert len(NUMBERS) == 22  # geometry 8, scanner 8, provenance 6


@pytest.mark.parametrize("rule", NUMBERS, ids=lambda rule: rule.path)
def test_a_sinogram_number_made_of_text_refuses_the_file(rule: FieldRule, sinogram: Path) -> None:
    _set_attr(sinogram, rule.path, _text_number(rule.kind))
    # A provenance key is checked by its own row, which names the key.
    named = rule.path.split("@")[-1] if rule.path.startswith("/provenance@") else rule.path
    with pytest.raises(DeidentificationError, match=rf"^{re.escape(named)} lies outside .* the file is refused"):
        deidentify_raw("metai-ct-sinogram", sinogram, PATIENT, UIDS)


@pytest.mark.parametrize("rule", LIMITED, ids=lambda rule: rule.path)
def test_a_sinogram_number_at_its_limits_is_kept(rule: FieldRule, sinogram: Path, tmp_path: Path) -> None:
    assert rule.limits is not None
    stored = tmp_path / "stored.h5"
    for value in rule.limits:
        _set_attr(sinogram, rule.path, int(value) if rule.kind == "integer" else value)
        stored.write_bytes(deidentify_raw("metai-ct-sinogram", sinogram, PATIENT, UIDS).content)
        obj_path, _, key = rule.path.partition("@")
        with h5py.File(stored, "r") as f:
            assert float(f[obj_path].attrs[key]) == value


@pytest.mark.parametrize(("name", "planted", "dtype"), [
    ("/sinogram", b"MRKZQXSINOGRAM16", "<f4"),  # four float32 near 1e16
    ("/geometry/angles_rad", b"MRKZQXANGLES1234", "<f8"),
    ("/geometry/angles_rad", np.array([np.nan, 0.0]).tobytes(), "<f8"),
    ("/geometry/angles_rad", np.array([13.0, 0.0]).tobytes(), "<f8"),  # beyond 4 pi
], ids=["sinogram-text", "angles-text", "angles-nan", "angles-13rad"])
def test_sinogram_values_no_scan_produces_refuse_the_file(name: str, planted: bytes, dtype: str,
                                                          sinogram: Path) -> None:
    with h5py.File(sinogram, "r+") as f:
        values = f[name][()]
        flat = values.reshape(-1)
        new = np.frombuffer(planted, dtype)
        flat[: new.size] = new
        f[name][...] = flat.reshape(values.shape)
    with pytest.raises(DeidentificationError, match=rf"{re.escape(name)} holds \d+ of \d+ values that are not finite "
                       r"or lie beyond"):
        deidentify_raw("metai-ct-sinogram", sinogram, PATIENT, UIDS)
