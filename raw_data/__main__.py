"""Command line: ``python -m raw_data {compare,scan,info,profiles}``.

- ``compare``: virtual comparative scanning of one digital patient on every scanner profile;
  prints the quality table and writes a PNG panel.
- ``scan``: virtually scan a DICOM CT slice (or a digital patient) with one profile and
  write the sinogram file.
- ``info``: describe a sinogram or ISMRMRD file (and validate it).
- ``profiles``: list the scanner profiles.

Any error ends as one ``error: ...`` line on stderr: exit code 2 for bad input (a missing or
unreadable file, a wrong option value), 1 for anything unexpected (a bug: the line asks for a
report; ``METAI_DEBUG=1`` adds the traceback), 130 for Ctrl-C. Output paths are checked
before any work, so a long comparison does not fail at its last step.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from raw_data.errors import MissingFileError, RawDataError

# Each command imports what it uses: torch, SciPy and scikit-image (seconds of start-up) only for
# the scans and comparisons that compute with them, and after the output path has been checked.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raw_data", description="MeTAI raw-data tools")
    sub = parser.add_subparsers(dest="command", required=True)

    cmp = sub.add_parser("compare", help="scan one digital patient with every profile")
    cmp.add_argument("--size", type=int, default=256, help="image side, pixels (default 256)")
    cmp.add_argument("--seed", type=int, default=0, help="patient and noise seed (default 0)")
    cmp.add_argument("--out", type=Path, default=Path("comparison.png"), help="PNG panel path")
    cmp.add_argument("--profiles", default="", help="comma-separated profile names (default all)")
    cmp.add_argument("--dose", type=float, default=1.0, help="dose factor (default 1.0)")
    cmp.add_argument("--filter", default="hann", help="FBP filter (default hann)")
    cmp.add_argument("--lesion-radius", type=float, default=8.0, help="lesion radius, mm")
    cmp.add_argument("--lesion-contrast", type=float, default=50.0, help="lesion contrast, HU")

    scan = sub.add_parser("scan", help="virtually scan a DICOM CT slice or a digital patient")
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--dicom", type=Path, help="a CT DICOM slice")
    source.add_argument("--patient-seed", type=int, help="a digital patient drawn with this seed")
    scan.add_argument("--profile", required=True, help="scanner profile name")
    scan.add_argument("--out", type=Path, required=True, help="sinogram .h5 to write")
    scan.add_argument("--size", type=int, default=256, help="patient image side, pixels")
    scan.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    scan.add_argument("--dose", type=float, default=1.0, help="dose factor (default 1.0)")

    info = sub.add_parser("info", help="describe and validate a sinogram or ISMRMRD file")
    info.add_argument("file", type=Path)

    sub.add_parser("profiles", help="list the scanner profiles")
    return parser


def _compare(args: argparse.Namespace) -> None:
    from raw_data.compare import compare_profiles, format_table, write_panel
    from raw_data.phantoms import make_patient

    radius = (args.lesion_radius, args.lesion_radius)
    contrast = (abs(args.lesion_contrast), abs(args.lesion_contrast))
    patient = make_patient(args.seed, radius_mm=radius, contrast_hu=contrast)
    names = [n.strip() for n in args.profiles.split(",") if n.strip()] or None
    result = compare_profiles(
        patient,
        args.size,
        profiles=names,
        seed=args.seed,
        dose_factor=args.dose,
        filter_name=args.filter,
    )
    print(f"patient: {patient.description} label={patient.label}")
    print(format_table(result))
    write_panel(result, args.out)
    print(f"panel written to {args.out}")


def _scan(args: argparse.Namespace) -> None:
    from raw_data.phantoms import make_patient
    from raw_data.scanners import get_profile
    from raw_data.sinogram_io import write_sinogram
    from raw_data.virtual_scan import read_dicom_attenuation, scan_image

    profile = get_profile(args.profile)
    if args.dicom is not None:
        image = read_dicom_attenuation(args.dicom)
        mu, grid, source = image.mu, image.grid, image.source
    else:
        patient = make_patient(args.patient_seed)
        mu, grid, source = patient.image(args.size), patient.grid(args.size), patient.description
    sinogram = scan_image(mu, grid, profile, seed=args.seed, dose_factor=args.dose, source=source)
    write_sinogram(args.out, sinogram)
    views, detectors = sinogram.data.shape
    print(f"wrote {args.out}: {views} views x {detectors} detectors, profile {profile.name}")


def _info(args: argparse.Namespace) -> None:
    from raw_data.ismrmrd_io import read_ismrmrd
    from raw_data.sinogram_io import is_sinogram, read_sinogram

    if is_sinogram(args.file):
        s = read_sinogram(args.file)
        g = s.geometry
        print(f"CT sinogram, {g.kind} beam, data {s.data.shape} (views, detectors)")
        print(f"  detector pitch {g.detector_pitch_mm} mm, image {g.image.shape} x {g.image.pixel_size_mm:.4g} mm")
        print(f"  profile: {s.profile.name if s.profile else '-'}")
        for key, value in s.provenance.items():
            print(f"  {key}: {value}")
        return
    k = read_ismrmrd(args.file)
    print(f"ISMRMRD k-space, {k.n_coils} coils, encoded {k.data.shape[1:]}, recon {k.recon_shape}")
    print(
        f"  lines acquired {int(k.sampled.sum())} (calibration {int(k.calibration.sum())}), "
        f"acceleration {k.acceleration}, coil maps {'yes' if k.coil_maps is not None else 'no'}"
    )
    if k.read_note:
        print(f"  read: {k.read_note}")


def _check_output(path: Path | None) -> None:
    """Refuse an output path whose folder does not exist, before any work is done."""
    if path is not None and not path.parent.is_dir():
        raise MissingFileError(f"the folder of --out does not exist ({path.parent}); create it or give another path",
                               path)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, RawDataError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}; check the path"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _debug() -> bool:
    # The command line's own switch: this pure library has no settings class to read it from.
    return os.environ.get("METAI_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _run(args: argparse.Namespace) -> None:
    if args.command == "compare":
        _check_output(args.out)
        _compare(args)
    elif args.command == "scan":
        _check_output(args.out)
        _scan(args)
    elif args.command == "info":
        _info(args)
    else:
        from raw_data.scanners import PROFILES

        for p in PROFILES.values():
            print(
                f"{p.name:<16} {p.n_views:>5} views x {p.n_detectors:>4} detectors, "
                f"FOV {p.field_of_view_mm:.0f} mm, flux {p.incident_flux:.0e}: {p.description}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status (0, 2 bad input, 1 a bug, 130 Ctrl-C)."""
    args = _parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        # A damaged file's text may not be valid UTF-8 (it reads back with surrogate escapes):
        # show such bytes escaped instead of failing to print them.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        _run(args)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except (RawDataError, OSError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line, the traceback only on request
        if _debug():
            traceback.print_exception(exc, file=sys.stderr)
        print(f"error: unexpected {type(exc).__name__} ({_describe(exc)}): this is a bug; please report it with "
              "the output of the same command run with METAI_DEBUG=1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
