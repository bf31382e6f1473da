"""ISMRMRD files: round trips, validity for the reference C++ tools, reading the reference
generator's output, and bad input."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import ismrmrd
import numpy as np
import pytest

from raw_data import (
    CorruptFileError,
    HeaderMismatchError,
    ImageGrid,
    IsmrmrdFormatError,
    KSpace,
    MissingFieldError,
    MissingFileError,
    NonFiniteDataError,
    coil_sensitivities,
    rasterize_ellipses,
    read_ismrmrd,
    reconstruct_kspace,
    shepp_logan,
    simulate_kspace,
    write_ismrmrd,
)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays, flattened."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def kspace() -> KSpace:
    image = rasterize_ellipses(shepp_logan(240.0), ImageGrid((64, 64), 240.0 / 64))
    maps = coil_sensitivities((64, 64), 4)
    return simulate_kspace(
        image,
        maps,
        acceleration=2,
        calibration_lines=10,
        noise_std=0.002,
        seed=1,
        readout_oversampling=2,
        fov_mm=(240.0, 240.0),
    )


@pytest.fixture
def written(tmp_path: Path, kspace: KSpace) -> Path:
    path = tmp_path / "kspace.h5"
    write_ismrmrd(path, kspace)
    return path


def _edit(path: Path, change: Callable[[Any], None]) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def _set_xml(path: Path, edit: Callable[[str], str]) -> None:
    with h5py.File(path, "r+") as f:
        xml = f["dataset/xml"][0]
        f["dataset/xml"][0] = edit(xml.decode() if isinstance(xml, bytes) else xml)


def test_round_trip_keeps_data_masks_maps_and_header(written: Path, kspace: KSpace) -> None:
    back = read_ismrmrd(written)
    np.testing.assert_array_equal(back.data, kspace.data)
    np.testing.assert_array_equal(back.imaging, kspace.imaging)
    np.testing.assert_array_equal(back.calibration, kspace.calibration)
    np.testing.assert_array_equal(back.coil_maps, kspace.coil_maps)
    np.testing.assert_array_equal(back.reference, kspace.reference)
    assert back.recon_shape == (64, 64)
    assert back.fov_mm == (240.0, 240.0)
    assert back.acceleration == 2
    assert back.provenance["noise_seed"] == "1"


def test_acquisitions_carry_indices_and_flags(written: Path, kspace: KSpace) -> None:
    dset = ismrmrd.Dataset(str(written), "dataset", mode="r")
    try:
        acqs = [dset.read_acquisition(n) for n in range(dset.number_of_acquisitions())]
    finally:
        dset.close()
    lines = [a.idx.kspace_encode_step_1 for a in acqs]
    assert lines == np.nonzero(kspace.sampled)[0].tolist()
    assert acqs[0].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)
    assert acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    assert acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    for a in acqs:
        line = a.idx.kspace_encode_step_1
        calib_only = kspace.calibration[line] and not kspace.imaging[line]
        both = kspace.calibration[line] and kspace.imaging[line]
        assert a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) == calib_only
        assert a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) == both
        assert a.data.shape == (4, 128)
        assert a.center_sample == 64


def test_reference_cpp_recon_reads_our_file(written: Path, tmp_path: Path, shepp_logan_tool: str) -> None:
    tool = shutil.which("ismrmrd_recon_cartesian_2d")
    assert tool is not None, "ismrmrd_recon_cartesian_2d comes with ismrmrd-tools"
    copy = tmp_path / "for_cpp.h5"
    shutil.copy(written, copy)
    subprocess.run([tool, str(copy)], check=True, capture_output=True, cwd=tmp_path)
    with h5py.File(copy, "r") as f:
        cpp_image = f["dataset/cpp/data"][0, 0, 0]
    ours = reconstruct_kspace(read_ismrmrd(copy), method="rss")
    assert cpp_image.shape == ours.shape
    assert correlation(cpp_image, ours) >= 0.9999


def test_reference_generator_output_reconstructs_to_its_phantom(tool_file: Path) -> None:
    kspace = read_ismrmrd(tool_file)
    assert kspace.data.shape == (8, 128, 256)  # readout oversampled twice
    assert kspace.recon_shape == (128, 128)
    assert kspace.coil_maps is not None
    assert kspace.reference is not None
    image = reconstruct_kspace(kspace)
    assert correlation(image, np.abs(kspace.reference)) >= 0.99


def test_reference_generator_single_interleaved_pass_reads_on_request(
    make_tool_file: Callable[..., Path],
) -> None:
    out = make_tool_file("accel.h5", "-m", "64", "-c", "4", "-a", "2", "-w", "8", "-C")
    kspace = read_ismrmrd(out, repetition=0)  # the noise-calibration acquisition is skipped
    assert kspace.acceleration == 2
    assert kspace.repetitions == (0,)
    assert "one undersampled pass" in kspace.read_note
    assert kspace.imaging.sum() == 32
    assert kspace.calibration.sum() == 8
    assert not np.any(kspace.data[:, ~kspace.sampled, :])
    assert correlation(reconstruct_kspace(kspace), np.abs(kspace.reference)) >= 0.8


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        read_ismrmrd(tmp_path / "absent.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "junk.h5"
    path.write_text("no")
    with pytest.raises(CorruptFileError, match=r"junk\.h5: cannot be read as HDF5"):
        read_ismrmrd(path)


def test_truncated_file(written: Path) -> None:
    raw = written.read_bytes()
    written.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        read_ismrmrd(written)


def test_missing_dataset_group_lists_what_is_there(written: Path) -> None:
    with pytest.raises(MissingFieldError, match=r"no ISMRMRD group 'other'; groups present: \['dataset'\]"):
        read_ismrmrd(written, dataset="other")


def test_missing_xml_header(written: Path) -> None:
    _edit(written, lambda f: f["dataset"].__delitem__("xml"))
    with pytest.raises(MissingFieldError, match="dataset /dataset/xml is missing"):
        read_ismrmrd(written)


def test_unparsable_xml_header(written: Path) -> None:
    _set_xml(written, lambda xml: xml[: len(xml) // 2])
    with pytest.raises(IsmrmrdFormatError, match="XML header does not parse"):
        read_ismrmrd(written)


def test_missing_header_field(written: Path) -> None:
    _set_xml(written, lambda xml: xml[: xml.index("<reconSpace>")] + xml[xml.index("</reconSpace>") + 13 :])
    with pytest.raises(MissingFieldError, match=r"XML header lacks a required element .*reconSpace"):
        read_ismrmrd(written)


def test_header_field_of_the_wrong_type(written: Path) -> None:
    _set_xml(written, lambda xml: xml.replace("<x>128</x>", "<x>abc</x>", 1))
    with pytest.raises(IsmrmrdFormatError, match="abc"):
        read_ismrmrd(written)


def test_non_cartesian_data_is_refused(written: Path) -> None:
    _set_xml(written, lambda xml: xml.replace(">cartesian<", ">radial<"))
    with pytest.raises(IsmrmrdFormatError, match="trajectory is 'radial'"):
        read_ismrmrd(written)


def test_header_disagreeing_with_the_lines(written: Path) -> None:
    _set_xml(written, lambda xml: xml.replace("<y>64</y>", "<y>16</y>", 1))
    with pytest.raises(HeaderMismatchError, match=r"kspace_encode_step_1 \d+, outside the encoded matrix"):
        read_ismrmrd(written)


def test_header_disagreeing_with_the_coils(written: Path) -> None:
    _set_xml(written, lambda xml: xml.replace("<receiverChannels>4<", "<receiverChannels>6<"))
    with pytest.raises(HeaderMismatchError, match="acquisition 0 has 4 channels, expected 6"):
        read_ismrmrd(written)


def test_coil_maps_of_the_wrong_shape(written: Path) -> None:
    def shrink(f: Any) -> None:
        csm = f["dataset/csm"][()]
        del f["dataset/csm"]
        f["dataset/csm"] = csm[:, :2]

    _edit(written, shrink)
    with pytest.raises(HeaderMismatchError, match="array csm has shape"):
        read_ismrmrd(written)


def test_non_finite_samples(written: Path) -> None:
    def poison(f: Any) -> None:
        record = f["dataset/data"][3]
        record["data"][5] = np.nan
        f["dataset/data"][3] = record

    _edit(written, poison)
    with pytest.raises(NonFiniteDataError, match="acquisition 3 holds 1 NaN"):
        read_ismrmrd(written)


def test_missing_slice(written: Path) -> None:
    with pytest.raises(MissingFieldError, match="no imaging acquisitions for slice 2"):
        read_ismrmrd(written, slice_index=2)


def _rewrite_chunked(path: Path, name: str, values: Any, dtype: Any) -> None:
    with h5py.File(path, "r+") as f:
        del f["dataset"][name]
        f["dataset"].create_dataset(name, data=values, dtype=dtype, maxshape=(None,), chunks=(4,))


def test_acquisition_table_with_an_extra_text_member_reads(written: Path, kspace: KSpace) -> None:
    # Valid HDF5 another writer may produce: a variable-length string beside head, traj and
    # data takes 16 bytes per record in the file but 8 in the type HDF5 reports, so the
    # records' stored size is not the reported type size.
    with h5py.File(written, "r") as f:
        table = f["dataset/data"][()]
    names = table.dtype.names
    widened = np.dtype([(n, table.dtype.fields[n][0]) for n in names] + [("note", h5py.string_dtype())])
    rows = np.zeros(table.shape, dtype=widened)
    for n in names:
        rows[n] = table[n]
    rows["note"] = [f"acquisition {i}" for i in range(len(rows))]
    _rewrite_chunked(written, "data", rows, widened)
    assert np.array_equal(read_ismrmrd(written).data, kspace.data)


def test_chunked_header_string_reads(written: Path, kspace: KSpace) -> None:
    with h5py.File(written, "r") as f:
        xml = f["dataset/xml"][0]
    _rewrite_chunked(written, "xml", [xml], h5py.string_dtype())
    assert read_ismrmrd(written).recon_shape == kspace.recon_shape
