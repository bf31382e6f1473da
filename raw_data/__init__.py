"""Raw tomographic data for the MeTAI exchange: make it, store it, read it, reconstruct it.

A pure library (no chain, no network):

- CT: parallel- and fan-beam geometries (mm, radians), a differentiable forward projector
  and its adjoint, filtered back-projection, a Poisson + electronic noise model, scanner
  profiles ("virtual twins"), and the versioned HDF5 sinogram format
  (``docs/formats/ct-sinogram.md``).
- MRI: multi-coil Cartesian k-space simulation, ISMRMRD read/write, reconstruction.
- Digital patients with lesions and labels, virtual scans of DICOM CT slices, and virtual
  comparative scanning with PSNR, SSIM and lesion CNR.

The package is imported lazily: ``import raw_data`` loads only the errors and the version, and
each name below is imported from its submodule on first use (PEP 562). A node reading a
sinogram header or listing scanner profiles then never pays for torch, SciPy or scikit-image,
which only the projectors, reconstructions and metrics need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raw_data._files import library_version
from raw_data.errors import (
    CorruptFileError,
    DataShapeError,
    DicomFormatError,
    FileFormatError,
    GeometryError,
    HeaderMismatchError,
    IsmrmrdFormatError,
    MissingFieldError,
    MissingFileError,
    NonFiniteDataError,
    PhantomError,
    ProfileNotFoundError,
    RawDataError,
    SinogramFormatError,
)

if TYPE_CHECKING:
    from raw_data.backprojection import circle_mask
    from raw_data.compare import (
        Comparison,
        ProfileScore,
        compare_profiles,
        format_table,
        to_hu,
        write_panel,
    )
    from raw_data.ellipses import Ellipse, ellipse_line_integrals, rasterize_ellipses
    from raw_data.filtered_backprojection import FILTERS, fbp
    from raw_data.geometry import (
        FanBeamGeometry,
        Geometry,
        ImageGrid,
        ParallelBeamGeometry,
        fan_beam,
        parallel_beam,
    )
    from raw_data.ismrmrd_io import read_ismrmrd, write_ismrmrd
    from raw_data.kspace import (
        KSpace,
        cartesian_mask,
        coil_sensitivities,
        fft2c,
        ifft2c,
        simulate_kspace,
    )
    from raw_data.metrics import background_ring, lesion_cnr, psnr, ssim
    from raw_data.mri_recon import (
        coil_images,
        combine_coils,
        reconstruct_kspace,
        root_sum_of_squares,
    )
    from raw_data.noise import detector_blur, make_generator, simulate_measurement
    from raw_data.phantoms import (
        MU_WATER_PER_MM,
        DigitalPatient,
        Lesion,
        ct_head,
        hu_to_attenuation,
        make_patient,
        shepp_logan,
    )
    from raw_data.projector import back_project, forward_project
    from raw_data.scanners import PROFILES, ScannerProfile, get_profile, profile_names
    from raw_data.sinogram import Sinogram
    from raw_data.sinogram_io import FORMAT_NAME, FORMAT_VERSION, read_sinogram, write_sinogram
    from raw_data.virtual_scan import (
        AttenuationImage,
        read_dicom_attenuation,
        reconstruct,
        scan_image,
    )

#: Submodule of each lazily imported public name.
_LAZY: dict[str, tuple[str, ...]] = {
    "raw_data.backprojection": ("circle_mask",),
    "raw_data.compare": ("Comparison", "ProfileScore", "compare_profiles", "format_table", "to_hu", "write_panel"),
    "raw_data.ellipses": ("Ellipse", "ellipse_line_integrals", "rasterize_ellipses"),
    "raw_data.filtered_backprojection": ("FILTERS", "fbp"),
    "raw_data.geometry": ("FanBeamGeometry", "Geometry", "ImageGrid", "ParallelBeamGeometry", "fan_beam",
                          "parallel_beam"),
    "raw_data.ismrmrd_io": ("read_ismrmrd", "write_ismrmrd"),
    "raw_data.kspace": ("KSpace", "cartesian_mask", "coil_sensitivities", "fft2c", "ifft2c", "simulate_kspace"),
    "raw_data.metrics": ("background_ring", "lesion_cnr", "psnr", "ssim"),
    "raw_data.mri_recon": ("coil_images", "combine_coils", "reconstruct_kspace", "root_sum_of_squares"),
    "raw_data.noise": ("detector_blur", "make_generator", "simulate_measurement"),
    "raw_data.phantoms": ("MU_WATER_PER_MM", "DigitalPatient", "Lesion", "ct_head", "hu_to_attenuation",
                          "make_patient", "shepp_logan"),
    "raw_data.projector": ("back_project", "forward_project"),
    "raw_data.scanners": ("PROFILES", "ScannerProfile", "get_profile", "profile_names"),
    "raw_data.sinogram": ("Sinogram",),
    "raw_data.sinogram_io": ("FORMAT_NAME", "FORMAT_VERSION", "read_sinogram", "write_sinogram"),
    "raw_data.virtual_scan": ("AttenuationImage", "read_dicom_attenuation", "reconstruct", "scan_image"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its submodule on first use and keep it here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__version__ = library_version()

__all__ = [
    "FILTERS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MU_WATER_PER_MM",
    "PROFILES",
    "AttenuationImage",
    "Comparison",
    "CorruptFileError",
    "DataShapeError",
    "DicomFormatError",
    "DigitalPatient",
    "Ellipse",
    "FanBeamGeometry",
    "FileFormatError",
    "Geometry",
    "GeometryError",
    "HeaderMismatchError",
    "ImageGrid",
    "IsmrmrdFormatError",
    "KSpace",
    "Lesion",
    "MissingFieldError",
    "MissingFileError",
    "NonFiniteDataError",
    "ParallelBeamGeometry",
    "PhantomError",
    "ProfileNotFoundError",
    "ProfileScore",
    "RawDataError",
    "ScannerProfile",
    "Sinogram",
    "SinogramFormatError",
    "__version__",
    "back_project",
    "background_ring",
    "cartesian_mask",
    "circle_mask",
    "coil_images",
    "coil_sensitivities",
    "combine_coils",
    "compare_profiles",
    "ct_head",
    "detector_blur",
    "ellipse_line_integrals",
    "fan_beam",
    "fbp",
    "fft2c",
    "format_table",
    "forward_project",
    "get_profile",
    "hu_to_attenuation",
    "ifft2c",
    "lesion_cnr",
    "make_generator",
    "make_patient",
    "parallel_beam",
    "profile_names",
    "psnr",
    "rasterize_ellipses",
    "read_dicom_attenuation",
    "read_ismrmrd",
    "read_sinogram",
    "reconstruct",
    "reconstruct_kspace",
    "root_sum_of_squares",
    "scan_image",
    "shepp_logan",
    "simulate_kspace",
    "simulate_measurement",
    "ssim",
    "to_hu",
    "write_ismrmrd",
    "write_panel",
    "write_sinogram",
]
