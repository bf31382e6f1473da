"""Files for the ingest tests (good DICOM, sinograms, ISMRMRD, bad files) and checks of a node.

All identifiers are synthetic markers; DICOM content comes from pydicom's public test files.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import struct
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from sqlalchemy import select

from node.catalog import QuarantineEntry, Record
from raw_data import Sinogram, coil_sensitivities, make_patient, parallel_beam, simulate_kspace, write_ismrmrd
from raw_data import write_sinogram as _write_sinogram
from tests.conftest import NODE_PASSPHRASE

REPO = Path(__file__).resolve().parents[2]
ISMRMRD_NS = "{http://www.ismrm.org/ISMRMRD}"


def sha(path_or_bytes: Path | bytes) -> str:
    """sha256 (hex) of a file or of bytes."""
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return hashlib.sha256(data).hexdigest()


def dicom_bytes(template: str = "CT_small.dcm", *, patient: str, instance: int, **elements: str) -> bytes:
    """A copy of a pydicom test file with a synthetic patient and fresh instance UID."""
    ds = pydicom.dcmread(get_testdata_file(template))
    ds.PatientID, ds.PatientName = patient, f"{patient}^SYNTH"
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[patient, str(instance), template])
    ds.InstanceNumber = instance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid values are planted on purpose
        for key, value in elements.items():
            setattr(ds, key, value)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_sinogram(path: Path, patient: str | None, *, views: int = 24, detectors: int = 32, seed: int = 0,
                   extra: dict[str, str] | None = None) -> None:
    """A small MeTAI sinogram (random line integrals) naming ``patient`` in its provenance."""
    rng = np.random.default_rng(seed)
    geometry = parallel_beam(views, detectors, 1.0, (detectors, detectors), 1.0)
    provenance = {"created_at": "2024-03-05T10:00:00+00:00", "synthetic": "true", **(extra or {})}
    if patient is not None:
        provenance["patient_id"] = patient
    data = rng.random((views, detectors), dtype=np.float32)
    _write_sinogram(path, Sinogram(data, geometry, None, provenance))


def write_kspace(path: Path, patient: str | None, *, size: int = 16, seed: int = 4) -> None:
    """A small ISMRMRD k-space file; with ``patient``, a subjectInformation naming it."""
    image = make_patient(seed).image(size).astype(np.float32)
    write_ismrmrd(path, simulate_kspace(image, coil_sensitivities((size, size), 2), noise_std=0.0))
    if patient is None:
        return
    with h5py.File(path, "r+") as f:
        root = ET.fromstring(f["dataset"]["xml"][0])
        subject = ET.Element(ISMRMRD_NS + "subjectInformation")
        ET.SubElement(subject, ISMRMRD_NS + "patientID").text = patient
        root.insert(0, subject)
        dtype = f["dataset"]["xml"].dtype
        del f["dataset"]["xml"]
        f["dataset"].create_dataset("xml", data=[ET.tostring(root, encoding="unicode")], dtype=dtype)


def mixed_corpus(folder: Path, *, dicoms: int, sinograms: int, kspaces: int) -> dict[str, str]:
    """Good files of every format plus bad ones; return {file name: "good" | "bad"}."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    for i in range(dicoms):
        name = f"ct-{i:04d}.dcm"
        (folder / name).write_bytes(dicom_bytes(patient=f"KILL-{i % 17:03d}", instance=i))
        kinds[name] = "good"
    for i in range(sinograms):
        write_sinogram(folder / f"sino-{i:03d}.h5", f"KILL-RAW-{i % 5}", seed=i)
        kinds[f"sino-{i:03d}.h5"] = "good"
    for i in range(kspaces):
        write_kspace(folder / f"knee-{i:03d}.h5", f"KILL-MR-{i}", seed=i)
        kinds[f"knee-{i:03d}.h5"] = "good"
    ct = (folder / "ct-0000.dcm").read_bytes()
    sino = (folder / "sino-000.h5").read_bytes()
    bad = {
        "truncated.dcm": ct[: len(ct) // 3],
        "notes.txt": b"not an image\n",
        "empty.dcm": b"",
        "header-only.h5": sino[:600],
        "garbage.h5": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4,
    }
    for i in range(max(0, dicoms // 10)):
        bad[f"cut-{i:03d}.dcm"] = dicom_bytes(patient=f"KILL-CUT-{i}", instance=10_000 + i)[: 700 + 37 * i]
    for name, data in bad.items():
        (folder / name).write_bytes(data)
        kinds[name] = "bad"
    write_sinogram(folder / "no-patient.h5", None, seed=999)  # names no patient: quarantined
    kinds["no-patient.h5"] = "bad"
    return kinds


def cli_env(node_dir: Path) -> dict[str, str]:
    """Environment of a ``metai-node`` subprocess running this worktree's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env.update({"METAI_NODE_DIR": str(node_dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
                "PYTHONPATH": str(REPO), "COLUMNS": "400"})
    return env


def start_ingest(node_dir: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m node.cli ingest ARGS`` in a subprocess (its own process group)."""
    return subprocess.Popen([sys.executable, "-m", "node.cli", "ingest", *args], cwd=REPO, env=cli_env(node_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_ingest(node_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m node.cli ingest ARGS`` to its end."""
    proc = start_ingest(node_dir, *args)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the ingest and its workers
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the ingest process only (its workers must die with it by themselves)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def node_files(node_dir: Path, folder: str) -> set[str]:
    """Files under ``node_dir/folder``, relative to ``node_dir``."""
    root = node_dir / folder
    return {p.relative_to(node_dir).as_posix() for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def catalog(node) -> tuple[list[Record], list[QuarantineEntry]]:  # type: ignore[no-untyped-def]
    """Every record and quarantine row of ``node``."""
    with node.sessions() as s:
        return list(s.scalars(select(Record))), list(s.scalars(select(QuarantineEntry)))


def files_containing(root: Path, marker: bytes, *, exclude: Path | None = None) -> list[Path]:
    """Files under ``root`` (outside ``exclude``) whose bytes contain ``marker``."""
    found = []
    for path in root.rglob("*"):
        outside = exclude is None or exclude not in path.parents
        if outside and path.is_file() and marker in path.read_bytes():
            found.append(path)
    return found


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def looping_sinogram(path: Path) -> None:
    """A sinogram whose global heap makes the HDF5 library loop forever on open.

    The size field of the heap object holding the string "line_integrals" is enlarged by
    0x800: HDF5 1.14 then never returns from reading the root attributes.
    """
    write_sinogram(path, "LOOP-1")
    data = bytearray(path.read_bytes())
    at = data.index(b"line_integral") - 8
    (length,) = struct.unpack_from("<Q", data, at)
    struct.pack_into("<Q", data, at, length + 0x800)
    path.write_bytes(bytes(data))


def bad_link_sinogram(path: Path, patient: str) -> None:
    """A sinogram whose root symbol-table node points a link name outside the local heap.

    h5py opens it and reads its attributes, then raises RuntimeError ("unable to offset into
    local heap data block") when a link is looked up, which the sinogram reader does.
    """
    write_sinogram(path, patient)
    data = bytearray(path.read_bytes())
    at = data.index(b"SNOD") + 8  # signature, version, reserved, symbol count: then the first entry's name offset
    (offset,) = struct.unpack_from("<Q", data, at)
    struct.pack_into("<Q", data, at, offset + 0x200)
    path.write_bytes(bytes(data))


def ingest_dataset(node, ds: pydicom.Dataset, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write ``ds`` as ``folder/image.dcm``, ingest the folder with ``node`` and return the node's directory.

    The file must be ingested, not quarantined: a test that scans for a planted value would pass
    trivially if the file never reached the store.
    """
    from node.ingest import Ingestor

    folder.mkdir()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    (folder / "image.dcm").write_bytes(buffer.getvalue())
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1)
    return Path(node.dir)
