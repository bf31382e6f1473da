"""A seeded fuzz corpus through `metai-node ingest`: no traceback, every file ingested or quarantined.

At least 500 mutants of every supported format (DICOM from pydicom's public test files, MeTAI
CT sinograms, ISMRMRD k-space), made by bit flips, truncations and overwritten byte ranges
aimed at the structures the readers walk: for DICOM the preamble, the file meta group and the
element headers (tag, VR, length); for HDF5 the superblock and the objects found by their
signatures and through h5py (object headers, B-trees, heaps, chunks): tests/raw_data/mutations.py. The
originals go in too. One ingest takes them all.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from node.exit_codes import ExitCode
from raw_data import read_ismrmrd, read_sinogram
from tests.node.ingest_corpus import catalog, run_ingest, sha, write_kspace, write_sinogram
from tests.raw_data.mutations import unique_mutants

SEED = 9_000_009
PER_FORMAT = 510
DICOM_ORIGINALS = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_jpeg_ls_lossless.dcm",
                   "rtdose.dcm"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, bytes]]]:
    """{file name: (format, original bytes)} of the originals, and the folder with everything.

    The originals' names sort first: a mutant that de-identifies to the same record (a flip in
    the DICOM preamble) is then the duplicate, not the original.
    """
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "corpus"
    folder.mkdir()
    originals: dict[str, tuple[str, bytes]] = {}
    for name in DICOM_ORIGINALS:
        originals[f"0-orig-{name}"] = ("dicom", Path(get_testdata_file(name)).read_bytes())
    for i in range(2):
        write_sinogram(root / f"s{i}.h5", f"FUZZ-RAW-{i}", views=16 + 8 * i, detectors=24, seed=i)
        originals[f"0-orig-sino-{i}.h5"] = ("sinogram", (root / f"s{i}.h5").read_bytes())
        write_kspace(root / f"k{i}.h5", f"FUZZ-MR-{i}", size=16, seed=i)
        originals[f"0-orig-kspace-{i}.h5"] = ("ismrmrd", (root / f"k{i}.h5").read_bytes())
    for name, (_, data) in originals.items():
        (folder / name).write_bytes(data)
    by_format: dict[str, list[str]] = {}
    for name, (fmt, _) in originals.items():
        by_format.setdefault(fmt, []).append(name)
    for fmt, names in by_format.items():
        per_source = -(-PER_FORMAT // len(names))
        for n, name in enumerate(names):
            for i, mutant in enumerate(unique_mutants(folder / name, SEED + 1000 * n, per_source)):
                (folder / f"mut-{fmt}-{Path(name).stem}-{i:03d}{Path(name).suffix}").write_bytes(mutant.data)
    return folder, originals


def _summary(stdout: str) -> tuple[int, int, int, int]:
    match = re.search(r"ingested (\d+), already present (\d+), quarantined (\d+), skipped (\d+)", stdout)
    assert match is not None, stdout[-2000:]
    ingested, present, quarantined, skipped = (int(g) for g in match.groups())
    return ingested, present, quarantined, skipped


def test_fuzzed_files_never_crash_the_ingest(make_node, corpus, tmp_path: Path) -> None:
    template, originals = corpus
    source = tmp_path / "source"
    shutil.copytree(template, source)
    files = {p.name: p.read_bytes() for p in source.iterdir()}
    for fmt in ("dicom", "sinogram", "ismrmrd"):
        assert sum(name.startswith(f"mut-{fmt}-") for name in files) >= 500
    node = make_node("Fuzz", role=False)

    result = run_ingest(node.dir, "--patient", "FUZZ-DEFAULT", "--file-timeout", "10", str(source), timeout=1200)

    assert result.returncode == ExitCode.PARTIAL, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr == ""
    ingested, present, quarantined, skipped = _summary(result.stdout)
    assert skipped == 0
    assert ingested + present + quarantined == len(files)
    records, rows = catalog(node)
    assert len(records) == ingested
    stored_sources = {r.source_sha256 for r in records}
    quarantined_sources = {q.source_sha256 for q in rows}
    for name, (_, data) in originals.items():  # every good file ingested
        assert sha(data) in stored_sources, name
    remaining = {p.name for p in source.iterdir()}
    for name, data in files.items():  # every other file ingested, known, or quarantined with a reason
        if name in remaining:
            assert (source / name).read_bytes() == data
        else:
            assert sha(data) in quarantined_sources, name
    assert len(remaining) == ingested + present
    assert len(files) - len(remaining) <= quarantined  # identical-content files share one row
    for row in rows:
        assert row.reason.strip()
        assert sha(node.dir / row.quarantine_path) == row.source_sha256
        assert row.reason in (node.dir / (row.quarantine_path + ".reason.txt")).read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. RLE segments with non-conformant padding: still decoded
        for record in records:  # what was accepted really reads back
            stored = node.dir / record.path
            if record.format == "dicom":
                assert pydicom.dcmread(stored).pixel_array.size > 0
            elif record.format == "metai-ct-sinogram":
                assert read_sinogram(stored).data.size > 0
            else:
                assert read_ismrmrd(stored).data.size > 0
