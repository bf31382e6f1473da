"""Raw tomographic data for the MeTAI exchange: make it, store it, read it, reconstruct it.

A pure library (no chain, no network):

- CT: parallel- and fan-beam geometries (mm, radians), a differentiable forward projector
  and its adjoint, filtered back-projection, a Poisson + electronic noise model, scanner
  profiles ("virtual twins"), and the versioned HDF5 sinogram format
  (``docs/formats/ct-sinogram.md``).
- MRI: multi-coil Cartesian k-space simulation, ISMRMRD read/write, reconstruction.
- Digital patients with lesions and labels, virtual scans of DICOM CT slices, and virtual
  comparative scanning with PSNR, SSIM and lesion CNR.
"""

from raw_data._files import library_version
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
