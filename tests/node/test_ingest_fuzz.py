"""A seeded fuzz corpus through `metai-node ingest`: no traceback, every file ingested or quarantined.

At least 500 mutants of every supported format (DICOM from pydicom's public test files, MeTAI
CT sinograms, ISMRMRD k-space), made by bit flips, truncations and overwritten byte ranges
aimed at the structures the readers walk: for DICOM the preamble, the file meta group and the
element headers (tag, VR, length); for HDF5 the superblock and the objects found by their
signatures (object headers, B-trees, local and global heaps, symbol-table nodes). The
originals go in too. One ingest takes them all.
"""

from __future__ import annotations

import io
import random
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import data_element_generator

from node.ingest import EXIT_PARTIAL
from raw_data import read_ismrmrd, read_sinogram
from tests.node.ingest_corpus import catalog, run_ingest, sha, write_kspace, write_sinogram

SEED = 9_000_009
PER_FORMAT = 510
DICOM_ORIGINALS = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_jpeg_ls_lossless.dcm",
                   "rtdose.dcm"]
HDF5_SIGNATURES = [b"OHDR", b"OCHK", b"TREE", b"HEAP", b"GCOL", b"SNOD", b"BTHD", b"BTIN", b"BTLF", b"FRHP",
                   b"FHDB", b"FHIB", b"FSHD", b"FSSE"]


def _dicom_targets(data: bytes) -> list[int]:
    """The preamble's end, the DICM prefix, and the header (tag, VR, length) of every element."""
    targets = [0, 120, 128, 132]
    fp = io.BytesIO(data)
    fp.seek(132)
    meta_end = 132
    for raw in data_element_generator(fp, False, True):  # the file meta group: explicit VR little endian
        if raw.tag.group != 2:
            break
        targets.append(raw.value_tell - _header_length(raw.VR, implicit=False))
        meta_end = raw.value_tell + raw.length
    implicit, little = pydicom.dcmread(io.BytesIO(data)).original_encoding
    fp.seek(meta_end)
    for raw in data_element_generator(fp, bool(implicit), little is not False):
        at = raw.value_tell if hasattr(raw, "value_tell") else raw.file_tell  # a parsed sequence has no value_tell
        targets.append(at - _header_length(raw.VR, implicit=bool(implicit)))
    return sorted({t for t in targets if 0 <= t < len(data)})


def _header_length(vr: str | None, *, implicit: bool) -> int:
    long_form = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
    return 8 if implicit or vr not in long_form else 12


def _hdf5_targets(data: bytes) -> list[int]:
    """The superblock, and every object whose signature appears in the file."""
    targets = [0, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88]
    for signature in HDF5_SIGNATURES:
        targets.extend(m.start() for m in re.finditer(re.escape(signature), data))
    return sorted(set(t for t in targets if t < len(data)))


def _mutants(original: bytes, targets: list[int], rng: random.Random, count: int) -> list[bytes]:
    out: list[bytes] = []
    seen = {sha(original)}
    while len(out) < count:
        data = bytearray(original)
        how = rng.random()
        if how < 0.30:  # bit flips anywhere
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how < 0.45:  # truncation
            data = data[: rng.randrange(len(data))]
        else:  # an overwritten range in a header, heap or tree
            at = rng.choice(targets) + rng.randrange(0, 48)
            width = rng.randint(1, 16)
            fill = rng.choice([lambda: rng.randrange(256), lambda: 0, lambda: 255])
            for i in range(at, min(at + width, len(data))):
                data[i] = fill()
        digest = sha(bytes(data))
        if digest not in seen:
            seen.add(digest)
            out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, bytes]]]:
    """{file name: (format, original bytes)} of the originals, and the folder with everything.

    The originals' names sort first: a mutant that de-identifies to the same record (a flip in
    the DICOM preamble) is then the duplicate, not the original.
    """
    rng = random.Random(SEED)
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
    by_format: dict[str, list[tuple[str, bytes]]] = {}
    for name, (fmt, data) in originals.items():
        by_format.setdefault(fmt, []).append((name, data))
    targets: dict[str, Callable[[bytes], list[int]]] = {"dicom": _dicom_targets, "sinogram": _hdf5_targets,
                                                        "ismrmrd": _hdf5_targets}
    for fmt, sources in by_format.items():
        per_source = -(-PER_FORMAT // len(sources))
        for name, data in sources:
            for i, mutant in enumerate(_mutants(data, targets[fmt](data), rng, per_source)):
                (folder / f"mut-{fmt}-{Path(name).stem}-{i:03d}{Path(name).suffix}").write_bytes(mutant)
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

    assert result.returncode == EXIT_PARTIAL, result.stderr[-3000:]
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
