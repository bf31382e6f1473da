"""Every text a reader can have decoded from a file, for :func:`node.redact.value_free` to compare with.

A library's message can only echo a value it read, but it reads through filters: an HDF5 dataset
stored with the deflate, shuffle or LZF filter, a DICOM file in the Deflated Explicit VR transfer
syntax. Such a value does not occur in the file's bytes, so comparing a message with the bytes
alone would let it through. :func:`decoded_view` adds what can be decoded:

- every zlib or gzip stream found at any offset, inflated (HDF5's deflate filter writes zlib);
- the body of a deflated DICOM file, inflated as raw deflate;
- for HDF5, read through h5py itself (so through whatever filter it applies): every object's
  name, every attribute value, and every dataset of text, opaque or compound type; text with
  XML character or entity references also as the XML parser reads it.

It only runs when a message is about to be made from a failure, never on the ingest's good path.
What it gathers is bounded (:data:`LIMIT` bytes); past that it stops adding.
"""

from __future__ import annotations

import contextlib
import html
import re
import zlib
from pathlib import Path
from typing import Any

__all__ = ["LIMIT", "decoded_view"]

LIMIT = 64 * 1024 * 1024
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_DEFLATED_DICOM = b"1.2.840.10008.1.2.1.99"
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
# Every two-byte zlib header with the deflate method and no preset dictionary.
_ZLIB_HEADERS = frozenset(bytes((cmf, flg)) for cmf in (0x08, 0x18, 0x28, 0x38, 0x48, 0x58, 0x68, 0x78)
                          for flg in range(256) if (cmf * 256 + flg) % 31 == 0 and not flg & 0x20)
# Where a stream can start (overlapping matches, so that no offset is skipped).
_STREAM_START = re.compile(b"(?=(" + b"|".join(re.escape(h) for h in sorted(_ZLIB_HEADERS | {b"\x1f\x8b"})) + b"))")


def decoded_view(content: bytes, path: Path | None = None) -> bytes:
    """``content`` followed by every text that can be decoded from it (see the module's docstring).

    Parameters:
        content: the file's bytes.
        path: where the file is, for HDF5 (h5py reads from a path); None to skip that part.
    """
    parts = [content]
    budget = _Budget(LIMIT)
    for inflated in _streams(content, budget):
        parts.append(inflated)
    if content.startswith(_HDF5_SIGNATURE) and path is not None:
        parts.extend(_hdf5_texts(path, budget))
    return b"\n".join(parts)


class _Budget:
    def __init__(self, left: int) -> None:
        self.left = left

    def take(self, data: bytes) -> bytes | None:
        if self.left <= 0:
            return None
        data = data[: self.left]
        self.left -= len(data)
        return data


def _streams(content: bytes, budget: _Budget) -> list[bytes]:
    found = []
    view = memoryview(content)
    start = _deflated_dicom_body(content)
    if start is not None:
        data = budget.take(_inflate(view[start:], -zlib.MAX_WBITS))
        if data:
            found.append(data)
    for match in _STREAM_START.finditer(content):
        offset = match.start()
        gzip = match.group(1) == b"\x1f\x8b"
        inflated = _inflate(view[offset:], 16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        if inflated:
            data = budget.take(inflated)
            if data is None:
                break
            found.append(data)
    return found


def _deflated_dicom_body(content: bytes) -> int | None:
    """Where the deflated data set of a Deflated Explicit VR file starts (after the file meta), or None."""
    if content[128:132] != b"DICM" or _DEFLATED_DICOM not in content[132:4096]:
        return None
    pos = 132
    while pos + 8 <= len(content) and content[pos : pos + 2] == b"\x02\x00":  # group 0002, explicit VR LE
        vr = content[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length = int.from_bytes(content[pos + 8 : pos + 12], "little")
            pos += 12 + length
        else:
            length = int.from_bytes(content[pos + 6 : pos + 8], "little")
            pos += 8 + length
    return pos if pos < len(content) else None


def _inflate(data: memoryview, wbits: int) -> bytes:
    try:
        out = zlib.decompressobj(wbits).decompress(data, LIMIT)
    except zlib.error:
        return b""
    return out if len(out) >= 2 else b""


def _hdf5_texts(path: Path, budget: _Budget) -> list[bytes]:
    import h5py
    import numpy as np

    found: list[bytes] = []

    def add(value: Any) -> None:
        data = _as_bytes(value, np)
        if b"&" in data:  # XML (the ISMRMRD header) can spell any text as character references
            data += b"\n" + html.unescape(data.decode("utf-8", "replace")).encode("utf-8", "replace")
        if data:
            taken = budget.take(data)
            if taken:
                found.append(taken)

    def visit(name: str, obj: Any) -> None:
        add(name)
        with contextlib.suppress(Exception):  # a damaged attribute: the reader could not have decoded it either
            for key in obj.attrs:
                add(key)
                add(obj.attrs[key])
        if isinstance(obj, h5py.Dataset) and (obj.dtype.kind in "SOUV" or obj.dtype.names):
            with contextlib.suppress(Exception):  # the same: damaged data cannot have reached a message
                add(obj[()])

    try:
        with h5py.File(path, "r") as f:
            visit("/", f)
            f.visititems(visit)
    except Exception:  # unreadable as HDF5: only the bytes and streams above can have been read
        pass
    return found


def _as_bytes(value: Any, np: Any) -> bytes:
    """The text in ``value``: strings as they are, text arrays and text fields of compounds; numbers left out."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.names:
            return b"\n".join(_as_bytes(value[name], np) for name in value.dtype.names)
        if value.dtype.kind in "SUV":
            return bytes(value.tobytes())
        if value.dtype.kind == "O":
            return b"\n".join(_as_bytes(v, np) for v in value.ravel().tolist() if isinstance(v, bytes | str))
        return b""
    if isinstance(value, np.void) and value.dtype.names:
        return b"\n".join(_as_bytes(value[name], np) for name in value.dtype.names)
    if isinstance(value, np.bytes_ | np.str_):
        return _as_bytes(value.item(), np)
    return b""
