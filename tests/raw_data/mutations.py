"""Seeded corruptions of HDF5 files, aimed at the structures the HDF5 library parses.

A random byte anywhere mostly lands in sample data, which any reader survives. The damage
that breaks readers sits in the metadata: the superblock, object headers (where small
attributes live), B-tree nodes, local and global heaps (names, variable-length strings and
arrays) and the dataset chunks that hold variable-length references. This module finds
those regions in a given file (by their on-disk signatures and through h5py's low-level
object and chunk information) and produces bit flips, overwritten ranges, size fields set
to extreme values, and truncations, weighted towards them.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pydicom
from pydicom.filereader import data_element_generator

import raw_data.errors

# On-disk signatures of HDF5 metadata structures (file format specification, versions 0-3).
SIGNATURES = (
    b"\x89HDF\r\n\x1a\n",  # superblock
    b"TREE",  # version 1 B-tree node (group and chunk indexes)
    b"HEAP",  # local heap (link names)
    b"GCOL",  # global heap collection (variable-length strings and arrays)
    b"SNOD",  # symbol table node
    b"OHDR",  # version 2 object header
    b"OCHK",  # object header continuation
    b"FRHP",  # fractal heap
    b"FHDB",  # fractal heap direct block
    b"FHIB",  # fractal heap indirect block
    b"BTHD",  # version 2 B-tree header
    b"BTLF",  # version 2 B-tree leaf
    b"BTIN",  # version 2 B-tree internal node
    b"FSHD",  # free-space manager header
    b"FSSE",  # free-space section list
)
_TEXT_MARKERS = (b"<ismrmrdHeader", b"<encoding>", b"<matrixSize>", b"<calibrationMode>")


@dataclass(frozen=True)
class Region:
    """A byte range of the file holding one structure, with a label for messages."""

    name: str
    start: int
    length: int


@dataclass(frozen=True)
class Mutant:
    """One corrupted copy of a file and what was done to it."""

    label: str
    data: bytes


def regions(path: Path) -> list[Region]:
    """Return the parsed regions of a file: HDF5 metadata, or a DICOM file's header."""
    raw = path.read_bytes()
    if raw[128:132] == b"DICM":
        return _dicom_regions(raw)
    found: list[Region] = []
    for sig in SIGNATURES + _TEXT_MARKERS:
        label = sig.decode("latin-1").strip("\x89\r\n\x1a")
        for m in re.finditer(re.escape(sig), raw):
            found.append(Region(label or "superblock", m.start(), 96))
    with h5py.File(path, "r") as f:
        objects: list[tuple[str, Any]] = [("/", f)]
        f.visititems(lambda name, obj: objects.append((name, obj)))
        for name, obj in objects:
            info = h5py.h5o.get_info(obj.id)
            found.append(Region(f"object header {name}", info.addr, max(int(info.hdr.space.total), 32)))
            if not isinstance(obj, h5py.Dataset):
                continue
            if obj.chunks is None:
                offset = obj.id.get_offset()
                if offset is not None:
                    found.append(Region(f"data {name}", offset, obj.id.get_storage_size()))
                continue
            for i in range(min(obj.id.get_num_chunks(), 16)):
                chunk = obj.id.get_chunk_info(i)
                found.append(Region(f"chunk {i} of {name}", chunk.byte_offset, chunk.size))
    return [r for r in found if 0 <= r.start < len(raw) and r.length > 0]


def _dicom_regions(raw: bytes) -> list[Region]:
    """Return the DICOM structures a reader parses: the preamble's end, the DICM prefix, and the
    header (tag, VR, length) of every element of the file meta group and the data set.

    Values are mostly samples and text, which a reader takes as they come; the headers decide
    how everything after them is parsed. A file whose elements cannot be walked falls back to
    32-byte pieces up to the pixel data.
    """
    found = [Region("preamble end", 120, 8), Region("DICM prefix", 128, 4)]
    try:
        fp = io.BytesIO(raw)
        fp.seek(132)
        meta_end = 132
        for elem in data_element_generator(fp, False, True):  # the file meta group: explicit VR little endian
            if elem.tag.group != 2:
                break
            found.append(_element_header(elem, implicit=False))
            meta_end = elem.value_tell + elem.length
        implicit, little = pydicom.dcmread(io.BytesIO(raw)).original_encoding
        fp.seek(meta_end)
        for elem in data_element_generator(fp, bool(implicit), little is not False):
            found.append(_element_header(elem, implicit=bool(implicit)))
    except Exception:
        pixel_tag = raw.find(b"\xe0\x7f\x10\x00")
        end = pixel_tag + 12 if pixel_tag > 0 else len(raw)
        return [Region(f"DICOM header +{start}", start, 32) for start in range(128, end, 32)]
    return found


_LONG_FORM_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


def _element_header(elem: Any, *, implicit: bool) -> Region:
    start = elem.value_tell if hasattr(elem, "value_tell") else elem.file_tell  # a parsed sequence has no value_tell
    length = 8 if implicit or elem.VR not in _LONG_FORM_VRS else 12
    return Region(f"DICOM element ({elem.tag.group:04X},{elem.tag.element:04X}) header", start - length, length)


_EXTREMES = (b"\xff" * 8, b"\x00" * 8, b"\x7f\xff\xff\xff" * 2, b"\x00\x00\x00\x80" * 2, b"\x01\x00\x00\x00" * 2)


def mutants(raw: bytes, where: list[Region], seed: int, count: int) -> Iterator[Mutant]:
    """Yield ``count`` seeded corruptions of ``raw``, four in five aimed at ``where``."""
    rng = np.random.default_rng(seed)
    size = len(raw)
    for n in range(count):
        if where and rng.random() < 0.8:
            region = where[int(rng.integers(len(where)))]
            offset = region.start + int(rng.integers(region.length))
            what = f"{region.name} +{offset - region.start}"
        else:
            offset = int(rng.integers(size))
            what = "anywhere"
        offset = min(offset, size - 1)
        kind = n % 5
        data = bytearray(raw)
        if kind == 0:
            bit = int(rng.integers(8))
            data[offset] ^= 1 << bit
            label = f"flip bit {bit} of byte {offset} ({what})"
        elif kind == 1:
            length = int(rng.integers(1, 17))
            data[offset : offset + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            label = f"overwrite {length} random bytes at {offset} ({what})"
        elif kind == 2:
            aligned = offset - offset % 4
            value = _EXTREMES[int(rng.integers(len(_EXTREMES)))][: int(rng.choice([2, 4, 8]))]
            data[aligned : aligned + len(value)] = value
            label = f"write {value.hex()} at {aligned} ({what})"
        elif kind == 3:
            del data[offset:]
            label = f"truncate to {offset} bytes ({what})"
        else:
            start = int(rng.integers(size))
            length = int(rng.integers(1, 65))
            data[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            label = f"overwrite {length} random bytes at {start} (anywhere)"
        yield Mutant(f"mutant {n}: {label}", bytes(data[:size]))


def documented_errors(reader: Callable[..., Any]) -> tuple[type[BaseException], ...]:
    """Return the exception classes listed under ``Raises:`` in ``reader``'s docstring."""
    doc = inspect.getdoc(reader) or ""
    section = doc.split("Raises:", 1)[1] if "Raises:" in doc else ""
    names = re.findall(r"^\s+(\w+Error):", section, flags=re.MULTILINE)
    # Only this package's classes count: a builtin (ValueError) would let any stray
    # third-party exception of that class pass as documented.
    classes = tuple(getattr(raw_data.errors, name) for name in names)
    if not classes:
        raise AssertionError(f"{reader.__name__} documents no error classes under 'Raises:'")
    return classes


REPO_ROOT = Path(__file__).resolve().parents[2]
READ_TIMEOUT_S = 30.0


class ReaderProcess:
    """A worker process that reads files with one reader and reports how each read ended.

    The worker runs under an address-space cap, so a corrupted size field that asks for a
    huge allocation fails at once (and must surface as a documented error) instead of
    swapping the machine. A read that does not return within :data:`READ_TIMEOUT_S` is a
    hang and one that kills the worker is a crash: both are findings, reported with the
    mutant, and a fresh worker takes over for the next mutant.
    """

    def __init__(self, reader: str, cap_bytes: int = 3 << 30) -> None:
        self.reader = reader
        self.cap_bytes = cap_bytes
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ReaderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.raw_data.mutation_worker", self.reader, str(self.cap_bytes)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc = proc
        if self._reply(300.0) != "ready":
            raise AssertionError(f"the reader worker for {self.reader} did not start")
        return proc

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._close_pipes(self.proc)
            self.proc = None

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[str]) -> None:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                # The worker may have died with input unread: nothing is left to flush.
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()

    def _reply(self, timeout: float) -> str | None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else ""

    def read(self, path: Path) -> str:
        """Return ``"read"``, ``"<documented class>: <message>"``, or ``"ESCAPED ..."``,
        ``"HANG ..."`` or ``"CRASH ..."``."""
        proc = self.proc or self._start()
        assert proc.stdin is not None
        proc.stdin.write(f"{path}\n")
        proc.stdin.flush()
        outcome = self._reply(READ_TIMEOUT_S)
        if outcome is None:
            self._stop()
            return f"HANG (no answer within {READ_TIMEOUT_S:.0f} s)"
        if outcome == "":
            code = proc.wait()
            self._close_pipes(proc)
            self.proc = None
            return f"CRASH (worker exited with {code})"
        return outcome


def run_corpus(reader: str, original: Path, folder: Path, *, seed: int, count: int) -> tuple[list[str], dict[str, int]]:
    """Read ``count`` mutants of ``original`` with ``reader`` (``"module:function"``).

    Returns:
        ``(findings, tally)``: one line per mutant whose read raised anything but the
        reader's documented errors, hung or crashed (label and what happened), and how
        many mutants ended each way.
    """
    target = folder / f"mutant{original.suffix}"
    findings: list[str] = []
    tally: dict[str, int] = {}
    with ReaderProcess(reader) as worker:
        for mutant in mutants(original.read_bytes(), regions(original), seed, count):
            target.write_bytes(mutant.data)
            outcome = worker.read(target)
            if outcome.startswith(("ESCAPED", "HANG", "CRASH")):
                findings.append(f"{mutant.label}: {outcome}")
            key = outcome.split(":")[0].split(" (")[0]
            tally[key] = tally.get(key, 0) + 1
    return findings, tally


def unique_mutants(path: Path, seed: int, count: int) -> list[Mutant]:
    """Return ``count`` distinct corruptions of the file at ``path`` (none equal to it)."""
    raw = path.read_bytes()
    where = regions(path)
    seen = {raw}
    out: list[Mutant] = []
    batch = 0
    while len(out) < count:
        for mutant in mutants(raw, where, seed + 7919 * batch, count):
            if mutant.data not in seen and len(out) < count:
                seen.add(mutant.data)
                out.append(mutant)
        batch += 1
    return out
