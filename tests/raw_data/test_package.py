"""The package's public names, imported on first use: all there, and the readers without torch."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import raw_data

REPO = Path(__file__).resolve().parents[2]
# Where each public name is defined (typed from the package's layout, not read from raw_data/__init__.py).
DEFINED_IN = {
    "circle_mask": "backprojection", "fbp": "filtered_backprojection", "FILTERS": "filtered_backprojection",
    "Sinogram": "sinogram", "read_sinogram": "sinogram_io", "write_sinogram": "sinogram_io",
    "read_ismrmrd": "ismrmrd_io", "write_ismrmrd": "ismrmrd_io", "KSpace": "kspace", "ssim": "metrics",
    "compare_profiles": "compare", "make_patient": "phantoms", "forward_project": "projector",
    "profile_names": "scanners", "scan_image": "virtual_scan", "parallel_beam": "geometry",
    "RawDataError": "errors", "simulate_measurement": "noise", "root_sum_of_squares": "mri_recon",
    "rasterize_ellipses": "ellipses",
}


@pytest.mark.parametrize("name", sorted(DEFINED_IN))
def test_a_public_name_is_the_object_of_its_module(name: str) -> None:
    module = importlib.import_module(f"raw_data.{DEFINED_IN[name]}")
    assert getattr(raw_data, name) is getattr(module, name)


def test_every_name_of_all_resolves_and_is_listed() -> None:
    assert set(DEFINED_IN) <= set(raw_data.__all__)
    for name in raw_data.__all__:
        assert getattr(raw_data, name) is not None, name
    assert set(raw_data.__all__) <= set(dir(raw_data))


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'raw_data' has no attribute 'no_such_name'"):
        _ = raw_data.no_such_name  # type: ignore[attr-defined]
    assert not hasattr(raw_data, "no_such_name")


def test_reading_raw_files_and_profiles_does_not_load_torch_scipy_or_skimage(tmp_path: Path) -> None:
    """A node's ingest reads sinograms and ISMRMRD files and lists scanner profiles: none of it needs
    the projectors' and metrics' libraries, whose import costs seconds in every ingest worker."""
    sinogram, kspace = tmp_path / "s.h5", tmp_path / "k.h5"
    raw_data.write_sinogram(sinogram, raw_data.Sinogram(
        raw_data.make_patient(1).image(8).astype("float32")[:4],
        raw_data.parallel_beam(4, 8, 1.0, (8, 8), 1.0), None, {}))
    raw_data.write_ismrmrd(kspace, raw_data.simulate_kspace(
        raw_data.make_patient(2).image(8).astype("float32"), raw_data.coil_sensitivities((8, 8), 2), noise_std=0.0))
    code = (
        "import sys, raw_data\n"
        f"s = raw_data.read_sinogram({str(sinogram)!r})\n"
        f"k = raw_data.read_ismrmrd({str(kspace)!r})\n"
        "print(s.data.shape, k.data.shape[0], len(raw_data.profile_names()) > 0)\n"
        "print(sorted(m for m in ('torch', 'scipy', 'skimage') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["(4, 8) 2 True", "[]"]


def test_the_tensor_of_a_sinogram_still_comes_from_torch() -> None:
    import numpy as np
    import torch

    data = np.arange(32, dtype=np.float32).reshape(4, 8)
    tensor = raw_data.Sinogram(data, raw_data.parallel_beam(4, 8, 1.0, (8, 8), 1.0), None, {}).tensor()
    assert isinstance(tensor, torch.Tensor)
    assert tensor.dtype == torch.float32
    assert tensor.tolist() == data.tolist()
