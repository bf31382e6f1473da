"""Find planted markers anywhere under a directory: plain, UTF-16, base64, inside deflate streams and HDF5.

A leak test plants distinct markers in the input, lets the node do its work, then calls
:func:`scan_tree` on the node directory. Every file is searched, whatever its name (store, catalog
with its ``-wal``/``-shm``, logs, cohorts, ``tmp/``, quarantine), and each marker is looked for in
every form a writer could leave it in:

- ``plain``: the marker's UTF-8 bytes;
- ``utf-16-le`` / ``utf-16-be``: what SQLite (UTF-16 databases), Windows tools and Java write;
- ``base64``: the marker encoded at each of the three byte alignments (XML ``base64Binary``, JSON);
- ``zlib@OFFSET`` / ``gzip@OFFSET``: inside a zlib or gzip stream starting at that byte (HDF5's
  deflate filter writes zlib streams; every plausible header at every offset is tried);
- ``hdf5-chunk DATASET``: inside a chunk of an HDF5 dataset read raw through h5py's chunk API and
  inflated as zlib or raw deflate;
- ``hdf5 WHERE``: in an HDF5 file's decoded content (object and attribute names, attribute values,
  dataset values), which also sees through filters such as shuffle that reorder bytes. The values
  of a dataset stored in other files (external raw storage, a virtual dataset) are not read: those
  files are not under the root (a quarantined source keeps its references to them).

Hits name the file (relative to the scanned root), the marker and how it was found.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Inflated output is capped so that a stream that inflates without end cannot stall a test.
MAX_INFLATED = 256 * 1024 * 1024
# Every two-byte zlib header (deflate, window up to 32 KiB, no preset dictionary) and the gzip
# magic, found at any offset (the look-ahead lets matches overlap).
_ZLIB_HEADERS = [
    bytes((cmf, flg))
    for cmf in range(0x08, 0x80, 0x10)
    for flg in range(256)
    if (cmf * 256 + flg) % 31 == 0 and not flg & 0x20
]
_STREAM_START = re.compile(b"(?=(" + b"|".join(re.escape(h) for h in [*_ZLIB_HEADERS, b"\x1f\x8b\x08"]) + b"))")


@dataclass(frozen=True)
class Hit:
    """One marker found in one file, and how."""

    file: str
    marker: str
    how: str


def forms(marker: str) -> dict[str, bytes]:
    """Return the byte patterns that betray ``marker``, by name of the encoding."""
    raw = marker.encode("utf-8")
    out = {"plain": raw, "utf-16-le": marker.encode("utf-16-le"), "utf-16-be": marker.encode("utf-16-be")}
    for shift in range(3):
        # Encoded after `shift` unknown leading bytes: only the characters fed by the marker alone
        # are fixed, so drop those that mix in the neighbours' bits at both ends.
        encoded = base64.b64encode(b"\x00" * shift + raw)
        start = {0: 0, 1: 2, 2: 3}[shift]
        end = (shift + len(raw)) // 3 * 4
        core = encoded[start:end]
        if len(core) >= 8:
            out[f"base64/{shift}"] = core
    return out


def scan_bytes(data: bytes, markers: Iterable[str], *, depth: int = 2) -> Iterator[tuple[str, str]]:
    """Yield (marker, how) for every marker found in ``data`` or in a deflate stream inside it.

    Parameters:
        data: the bytes to search.
        markers: the markers.
        depth: how many levels of nested compressed streams to open.
    """
    markers = list(markers)
    patterns = {m: forms(m) for m in markers}
    for marker in markers:
        for how, pattern in patterns[marker].items():
            if pattern in data:
                yield marker, how
    if depth <= 0:
        return
    for offset, how, inflated in _streams(data):
        for marker, inner in scan_bytes(inflated, markers, depth=depth - 1):
            yield marker, f"{how}@{offset}/{inner}"


def _streams(data: bytes) -> Iterator[tuple[int, str, bytes]]:
    """Yield (offset, "zlib" | "gzip", inflated bytes) for every stream that inflates to something."""
    view = memoryview(data)
    for match in _STREAM_START.finditer(data):
        offset = match.start()
        gzip = match.group(1) == b"\x1f\x8b\x08"
        inflated = _inflate(view[offset:], 16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        if inflated:
            yield offset, "gzip" if gzip else "zlib", inflated


def _inflate(data: memoryview | bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        return inflater.decompress(data, MAX_INFLATED)
    except zlib.error:
        return b""


def scan_hdf5(path: Path, markers: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Yield (marker, how) for markers in an HDF5 file's chunks and decoded content.

    Raw chunks are read with h5py's chunk API and inflated (zlib and raw deflate); names,
    attributes and dataset values are decoded by h5py, whatever filters the file uses.
    """
    markers = list(markers)
    try:
        handle = h5py.File(path, "r")
    except OSError:
        return  # not readable as HDF5 (e.g. truncated): the byte scans still cover it
    raw = path.read_bytes()
    with handle as f:
        objects: list[tuple[str, Any]] = [("/", f)]
        f.visititems(lambda name, obj: objects.append((name, obj)))
        links: list[str] = []
        f.visit_links(links.append)  # soft and external links are not objects: their names and targets
        for name in links:
            link = f.get(name, getlink=True)
            target = getattr(link, "path", "") + getattr(link, "filename", "")
            for marker, how in scan_bytes(f"{name}\n{target}".encode("utf-8", "surrogateescape"), markers, depth=0):
                yield marker, f"hdf5 link {name}/{how}"
        for name, obj in objects:
            texts = [name.encode("utf-8", "surrogateescape")]
            for key in obj.attrs:
                texts.append(key.encode("utf-8", "surrogateescape"))
                texts.append(_as_bytes(_attr(obj, key)))
            if isinstance(obj, h5py.Dataset):
                texts.append(_as_bytes(_read(obj)))
                yield from _scan_chunks(raw, obj, markers)
            for marker, how in scan_bytes(b"\n".join(texts), markers, depth=1):
                yield marker, f"hdf5 {name}/{how}"


def _scan_chunks(raw: bytes, dset: h5py.Dataset, markers: list[str]) -> Iterator[tuple[str, str]]:
    if dset.chunks is None:
        return
    for index in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(index)
        chunk = raw[info.byte_offset : info.byte_offset + info.size]
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            inflated = _inflate(chunk, wbits)
            for marker, how in scan_bytes(inflated, markers, depth=0):
                yield marker, f"hdf5-chunk {dset.name}[{index}]/{how}"


def _attr(obj: Any, key: str) -> Any:
    try:
        return obj.attrs[key]
    except (OSError, TypeError, ValueError) as exc:  # a type h5py cannot decode: its raw text still counts
        return repr(exc)


def _read(dset: h5py.Dataset) -> Any:
    try:
        plist = dset.id.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count():
            # The values are in other files, which h5py would open by the paths this file names:
            # they are not under the scanned root (a file there is scanned on its own).
            return b""
        return dset[()]
    except (OSError, TypeError, ValueError) as exc:
        return repr(exc)


def _as_bytes(value: Any) -> bytes:
    """Flatten any decoded HDF5 value into bytes that hold its strings and its raw numbers."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O" or value.dtype.names:
            parts = [_as_bytes(v) for v in value.ravel().tolist()] if value.dtype.kind == "O" else []
            if value.dtype.names:
                parts += [_as_bytes(value[field]) for field in value.dtype.names]
            return b"\n".join(parts)
        return value.tobytes()
    if isinstance(value, np.void):
        return _as_bytes(np.array(value))
    if isinstance(value, tuple | list):
        return b"\n".join(_as_bytes(v) for v in value)
    if isinstance(value, np.generic):
        return value.tobytes()
    return str(value).encode("utf-8", "surrogateescape")


def scan_tree(root: Path, markers: Iterable[str]) -> list[Hit]:
    """Return every marker found in any file under ``root`` (hidden files and symlinks' targets included).

    Parameters:
        root: the directory to search (e.g. a node directory).
        markers: the planted markers.

    Returns:
        One :class:`Hit` per (file, marker, how), sorted; empty if nothing leaked.
    """
    markers = sorted(set(markers))
    hits: set[Hit] = set()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        for marker, how in scan_bytes(data, markers):
            hits.add(Hit(rel, marker, how))
        if data.startswith(HDF5_SIGNATURE):
            for marker, how in scan_hdf5(path, markers):
                hits.add(Hit(rel, marker, how))
    return sorted(hits, key=lambda h: (h.file, h.marker, h.how))


def describe(hits: list[Hit]) -> str:
    """One line per hit, for assertion messages."""
    return "\n".join(f"{h.file}: {h.marker} ({h.how})" for h in hits)
