"""Rewrite a de-identified data set's pixel data so it carries only what decoding needs.

Attribute rules never see inside Pixel Data, yet its byte stream has room for text no viewer shows:
comment and application segments of a JPEG frame, the comment marker of a JPEG 2000 codestream, bytes
after a frame's end marker, bytes an RLE segment holds past the pixels it encodes, and bytes after the
last pixel of native data. This module drops them losslessly: kept segments are copied byte for byte
and no pixel is decoded or re-encoded, so the image decodes exactly as before. Encapsulations it cannot
walk (MPEG, HEVC, deflated images...) are refused: the file is quarantined, never stored unread.

It does not read the pixels themselves: text burned into the image is a matter for BurnedInAnnotation
and the review the docs describe (docs/deidentification-dicom.md).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import pydicom
from pydicom.encaps import encapsulate, encapsulate_extended, generate_fragmented_frames
from pydicom.uid import UID

from node.errors import DeidentificationError
from node.pixel_stream_jpeg import clean_j2k, clean_jpeg

if TYPE_CHECKING:
    from node.deid import DeidResult

__all__ = ["clean_pixel_data", "strip_pixel_stream"]

_Walker = Callable[[bytes, str], "tuple[bytes, list[str]] | None"]

_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
         "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
_RLE = "1.2.840.10008.1.2.5"
_NATIVE = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def strip_pixel_stream(result: DeidResult) -> DeidResult:
    """Return ``result`` with its data set's pixel data cleaned (see clean_pixel_data) and flags added.

    Parameters:
        result: what node.deid.deidentify returned; its data set is changed in place.

    Returns:
        The same result with one flag per kind of content dropped from the pixel data.

    Raises:
        DeidentificationError: the pixel data use an encapsulation the node cannot walk, or are damaged.
    """
    flags = clean_pixel_data(result.dataset)
    return dataclasses.replace(result, flags=result.flags + tuple(flags)) if flags else result


def clean_pixel_data(ds: pydicom.Dataset) -> list[str]:
    """Drop from ``ds``'s pixel data every byte decoding does not need; pixels decode the same after.

    Parameters:
        ds: a data set read from a file (its transfer syntax is in ``file_meta``); changed in place.

    Returns:
        Flags saying what was dropped; empty when the pixel data were already clean (then nothing changed).

    Raises:
        DeidentificationError: the transfer syntax is encapsulated but not JPEG, JPEG-LS, JPEG 2000,
            HTJ2K or RLE, or a frame's structure cannot be walked (damaged or unknown markers).
    """
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not syntax.is_transfer_syntax or not syntax.is_compressed:
        return _clean_native(ds)
    if "PixelData" not in ds:
        return []
    if syntax in _JPEG:
        return _clean_encapsulated(ds, clean_jpeg, "JPEG")
    if syntax in _J2K:
        return _clean_encapsulated(ds, clean_j2k, "JPEG 2000")
    if syntax == _RLE:
        return _clean_encapsulated(ds, _rle_walker(int(ds.Rows) * int(ds.Columns)), "RLE")
    raise DeidentificationError(
        f"pixel data are encapsulated as {syntax.name or syntax} ({syntax}); the node can only check JPEG, "
        "JPEG-LS, JPEG 2000, HTJ2K and RLE streams for hidden text, so it does not store this one: "
        "transcode the image to one of these transfer syntaxes (or an uncompressed one) and ingest it again")


def _clean_native(ds: pydicom.Dataset) -> list[str]:
    keyword = next((k for k in _NATIVE if k in ds), None)
    if keyword is None:
        return []
    value = ds[keyword].value
    if not isinstance(value, bytes):
        return []
    expected = _expected_length(ds, keyword)
    # Odd lengths are padded to even. The pad byte is kept as it is: in big-endian OW data it is not the
    # last byte of the value but sits inside the last swapped word, and one byte cannot carry a name.
    padded = expected + expected % 2
    if len(value) <= padded:
        return []  # short data are the parser's concern
    ds[keyword].value = value[:padded]
    return [f"{keyword}: {len(value) - padded} bytes after the last pixel ({padded} bytes expected) removed"]


def _expected_length(ds: pydicom.Dataset, keyword: str) -> int:
    """Return the bytes the pixels take (without the pad byte): 1-bit data are packed, YBR_FULL_422 is 2/3."""
    try:
        samples = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
        samples *= int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DeidentificationError(f"native {keyword} length cannot be checked: Rows, Columns, SamplesPerPixel, "
                                    f"NumberOfFrames or BitsAllocated is missing or not a number ({exc}); "
                                    "correct the image description and ingest the file again") from exc
    length = (samples + 7) // 8 if bits == 1 else samples * (bits // 8)
    return length // 3 * 2 if ds.get("PhotometricInterpretation") == "YBR_FULL_422" else length


def _clean_encapsulated(ds: pydicom.Dataset, walk: _Walker, family: str) -> list[str]:
    frames = _frames(ds)
    cleaned: list[bytes] = []
    notes: list[str] = []
    for index, frame in enumerate(frames, start=1):
        outcome = walk(frame, f"{family} frame {index} of {len(frames)}")
        cleaned.append(frame if outcome is None else outcome[0])
        if outcome is not None:
            notes.append(f"frame {index}: " + ", ".join(outcome[1]))
    if not notes:
        return []
    if "ExtendedOffsetTable" in ds:
        data, offsets, lengths = encapsulate_extended(cleaned)
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = data, offsets, lengths
    else:
        ds.PixelData = encapsulate(cleaned, has_bot=sum(len(f) + 8 for f in cleaned) < 2**32)
    ds["PixelData"].is_undefined_length = True
    # A flag per frame would swamp the report of a 1,000-frame cine; the first few show what it was.
    what = "; ".join(notes[:3]) + (f"; and {len(notes) - 3} more frames" if len(notes) > 3 else "")
    return [f"pixel data ({family}): removed what decoding does not read: {what}"]


def _frames(ds: pydicom.Dataset) -> list[bytes]:
    """Split the encapsulated pixel data into frames, refusing fragments beyond NumberOfFrames."""
    number = int(ds.get("NumberOfFrames", 1) or 1)
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        frames = [b"".join(parts) for parts in generate_fragmented_frames(
            ds.PixelData, number_of_frames=number, extended_offsets=extended)]
    except (ValueError, struct.error, EOFError) as exc:
        raise DeidentificationError(f"encapsulated pixel data cannot be split into frames ({exc}); the item "
                                    "structure is damaged: re-export the image") from exc
    if len(frames) != number:
        raise DeidentificationError(f"encapsulated pixel data hold {len(frames)} frames, NumberOfFrames says "
                                    f"{number}; frames past the declared ones would be stored unread: set "
                                    "NumberOfFrames to match or re-export the image")
    return frames


def _rle_walker(plane: int) -> _Walker:
    """Return a walker that cuts each RLE segment of a frame once it has decoded ``plane`` bytes."""

    def walk(frame: bytes, what: str) -> tuple[bytes, list[str]] | None:
        return _clean_rle(frame, what, plane)

    return walk


def _clean_rle(frame: bytes, what: str, plane: int) -> tuple[bytes, list[str]] | None:
    """Cut each RLE segment where its PackBits runs end; drop bytes between segments and after them."""
    if len(frame) < 64:
        raise DeidentificationError(f"{what} has {len(frame)} bytes, fewer than the 64-byte RLE header; "
                                    "the pixel data are damaged: re-export the image")
    header = struct.unpack("<16I", frame[:64])
    count, offsets = header[0], list(header[1 : header[0] + 1])
    if not 1 <= count <= 15 or offsets[0] != 64 or offsets != sorted(offsets) or offsets[-1] > len(frame):
        raise DeidentificationError(f"{what} has an RLE header of {count} segments at offsets {offsets}, "
                                    "expected 1 to 15 increasing offsets starting at 64 within the frame; "
                                    "the pixel data are damaged: re-export the image")
    segments = []
    for start, stop in zip(offsets, [*offsets[1:], len(frame)], strict=True):
        cut = _runs_end(frame, start, stop, plane)
        if cut + 1 == stop and frame[cut] in (0x00, 0x80):
            cut = stop  # a writer's pad byte to even length (zero, or PackBits' no-op): kept, it holds nothing
        segments.append(frame[start:cut])
    starts, pos = [], 64
    for segment in segments:
        starts.append(pos)
        pos += len(segment)
    # Unused header offsets are written as zero, so the header carries nothing but the segment table.
    new = struct.pack("<16I", count, *starts, *([0] * (15 - count))) + b"".join(segments)
    if new == frame:
        return None
    return new, [f"bytes past the RLE runs ({len(frame) - len(new)} bytes)"]


def _runs_end(frame: bytes, start: int, stop: int, plane: int) -> int:
    """Return where the PackBits runs from ``start`` have decoded ``plane`` bytes (``stop`` if never)."""
    pos, produced = start, 0
    while pos < stop and produced < plane:
        n = frame[pos]
        if n < 128:  # n + 1 literal bytes follow
            pos, produced = pos + 2 + n, produced + n + 1
        elif n > 128:  # the next byte, 257 - n times
            pos, produced = pos + 2, produced + 257 - n
        else:
            pos += 1
    return min(pos, stop)
