"""Keep only what decoding needs in one JPEG, JPEG-LS or JPEG 2000 frame (no pixel is re-encoded).

A JPEG stream is a series of marker segments; the comment segment (COM) and the application segments
(APP1 EXIF/XMP, APP2 ICC, ...) may hold any text and no decoder needs them to produce the pixels, and a
decoder stops at the end-of-image marker (EOI), so whatever follows it is never shown either. A JPEG 2000
codestream has a comment marker (COM, FF64) in its main and tile-part headers and ends at EOC. These
walkers copy the segments a decoder reads and drop the rest; each returns ``None`` when the frame has
nothing to drop, so that the common case costs one pass over the headers and a few C-level searches.

Each function raises DeidentificationError (the file is quarantined) for a stream it cannot walk: a
stream the node cannot parse is a stream it cannot prove free of text.
"""

from __future__ import annotations

import re
import struct

from node.errors import DeidentificationError

# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, 0xD9}
# Segments a decoder reads: SOF0-15 (with DHT C4 and DAC CC), DNL, DRI, DHP, EXP, DQT, SOS, JPEG-LS
# SOF55 (F7) and LSE (F8). C8 (JPG) and the JPGn range are reserved, so they are refused below.
_JPEG_KEEP = {*range(0xC0, 0xC8), *range(0xC9, 0xD0), 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xDA, 0xF7, 0xF8}
_JPEG_DROP = {*range(0xE1, 0xF0), 0xFE}  # APP1-APP15, COM (APP0 and APP14 are handled apart)
# End of entropy-coded data. In JPEG a data FF is followed by a stuffed 00; in JPEG-LS by a byte whose
# high bit is clear (ITU-T T.87 A.1), so only FF 80-FF ends the data there. RSTn lies inside the data.
_JPEG_ECS_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_JPEGLS_ECS_END = re.compile(rb"\xff[\x80-\xcf\xd8-\xff]")
_JFIF = b"JFIF\x00"
# An odd-length frame is padded to an even item length with one zero byte; encapsulating adds it back.
_PADDING = (b"", b"\x00")
_ADOBE = b"Adobe"


def clean_jpeg(frame: bytes, what: str) -> tuple[bytes, list[str]] | None:
    """Return ``frame`` without COM, APP1-15, other APP0/APP14 content and bytes after EOI.

    Parameters:
        frame: one JPEG, JPEG-LS or lossless JPEG frame (SOI ... EOI).
        what: the frame's name in messages ("frame 3").

    Returns:
        None if nothing is to be dropped, else the kept bytes and what was dropped.

    Raises:
        DeidentificationError: the frame is not a JPEG stream or has a marker the walker does not know.
    """
    if frame[:2] != b"\xff\xd8":
        raise DeidentificationError(f"{what} starts with {frame[:2].hex()}, expected the JPEG SOI marker "
                                    "ffd8; the pixel data are damaged or not JPEG: re-export the image")
    kept = [frame[:2]]
    dropped: list[str] = []
    changed = False
    pos, end, jpeg_ls = 2, len(frame), False
    while True:
        if pos + 2 > end:
            raise DeidentificationError(f"{what} ends at byte {pos} without the EOI marker ffd9; the JPEG "
                                        "stream is truncated: re-export the image")
        if frame[pos] != 0xFF:
            raise DeidentificationError(f"{what} has byte {frame[pos]:#04x} at {pos} where a JPEG marker was "
                                        "expected; the stream is damaged: re-export the image")
        if pos + 1 < end and frame[pos + 1] == 0xFF:  # fill bytes before a marker carry nothing
            fill = pos
            while pos + 1 < end and frame[pos + 1] == 0xFF:
                pos += 1
            dropped.append(f"fill bytes ({pos - fill})")
            changed = True
        marker = frame[pos + 1]
        if marker == 0xD9:
            kept.append(frame[pos : pos + 2])
            if frame[pos + 2 :] not in _PADDING:
                dropped.append(f"bytes after EOI ({end - pos - 2})")
                changed = True
            break
        if marker in _STANDALONE:
            kept.append(frame[pos : pos + 2])
            pos += 2
            continue
        if pos + 4 > end:
            raise DeidentificationError(f"{what} is cut inside marker ff{marker:02x}; re-export the image")
        length = struct.unpack(">H", frame[pos + 2 : pos + 4])[0]
        stop = pos + 2 + length
        if length < 2 or stop > end:
            raise DeidentificationError(f"{what} marker ff{marker:02x} at {pos} declares {length} bytes, "
                                        f"{end - pos - 2} are left; the stream is damaged: re-export the image")
        body = frame[pos + 4 : stop]
        if marker in _JPEG_KEEP:
            kept.append(frame[pos:stop])
            jpeg_ls = jpeg_ls or marker == 0xF7
        elif marker in (0xE0, 0xEE):
            segment = _trim_app(marker, body)
            if segment is None:
                dropped.append(f"APP{marker - 0xE0} ({length - 2} bytes)")
            elif len(segment) != stop - pos:
                dropped.append(f"APP{marker - 0xE0} extra content ({stop - pos - len(segment)} bytes)")
            if segment is not None:
                kept.append(segment)
            changed = changed or segment != frame[pos:stop]
        elif marker in _JPEG_DROP:
            dropped.append(("COM" if marker == 0xFE else f"APP{marker - 0xE0}") + f" ({length - 2} bytes)")
            changed = True
        else:
            raise DeidentificationError(f"{what} has the reserved JPEG marker ff{marker:02x}, which the node "
                                        "cannot prove free of text; re-export the image without it")
        pos = stop
        if marker == 0xDA:  # entropy-coded data follow the scan header up to the next marker
            found = (_JPEGLS_ECS_END if jpeg_ls else _JPEG_ECS_END).search(frame, pos)
            if found is None:
                raise DeidentificationError(f"{what} ends inside its entropy-coded data without EOI ffd9; "
                                            "the JPEG stream is truncated: re-export the image")
            kept.append(frame[pos : found.start()])
            pos = found.start()
    return (b"".join(kept), dropped) if changed else None


def _trim_app(marker: int, body: bytes) -> bytes | None:
    """Keep the fixed fields of APP0 JFIF and APP14 Adobe (they choose the colour transform), else nothing."""
    if marker == 0xE0 and body[:5] == _JFIF and len(body) >= 14:
        # Version, units, densities; the thumbnail (an image of its own) is cut by setting its size to 0.
        fields = body[:12] + b"\x00\x00"
    elif marker == 0xEE and body[:5] == _ADOBE and len(body) >= 12:
        fields = body[:12]  # version, flags0, flags1, transform
    else:
        return None
    return bytes([0xFF, marker]) + struct.pack(">H", len(fields) + 2) + fields


# JPEG 2000 (ITU-T T.800 A, and T.814 for HTJ2K's CAP and CPF). Segments kept in the main header and in
# tile-part headers; COM is dropped; TLM (tile-part lengths) is dropped when a tile part changes length.
_SOC, _SOT, _SOD, _EOC = 0xFF4F, 0xFF90, 0xFF93, 0xFFD9
_J2K_MAIN = {0xFF50, 0xFF51, 0xFF52, 0xFF53, 0xFF55, 0xFF57, 0xFF59, 0xFF5C, 0xFF5D, 0xFF5E, 0xFF5F,
             0xFF60, 0xFF63}
_J2K_TILE = {0xFF52, 0xFF53, 0xFF58, 0xFF5C, 0xFF5D, 0xFF5E, 0xFF5F, 0xFF61}
_COM, _TLM = 0xFF64, 0xFF55
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def clean_j2k(frame: bytes, what: str) -> tuple[bytes, list[str]] | None:
    """Return ``frame`` as a bare codestream without COM markers and bytes after EOC.

    Parameters:
        frame: one JPEG 2000 or HTJ2K frame: a codestream (SOC ... EOC) or a JP2 file holding one.
        what: the frame's name in messages ("frame 3").

    Returns:
        None if nothing is to be dropped, else the kept bytes and what was dropped.

    Raises:
        DeidentificationError: the frame is not a codestream or has a marker the walker does not know.
    """
    dropped: list[str] = []
    if frame.startswith(_JP2_SIGNATURE):
        frame = _jp2_codestream(frame, what)
        dropped.append("JP2 file boxes around the codestream")
    if frame[:2] != b"\xff\x4f":
        raise DeidentificationError(f"{what} starts with {frame[:2].hex()}, expected the JPEG 2000 SOC marker "
                                    "ff4f; the pixel data are damaged or not JPEG 2000: re-export the image")
    main, pos, stale_tlm = [frame[:2]], 2, False
    main_tlm: list[int] = []
    pos = _j2k_header(frame, pos, _J2K_MAIN, main, dropped, what, main_tlm)
    tiles: list[bytes] = []
    tile_headers: list[bytes] = []
    end = len(frame)
    while True:
        marker = _marker(frame, pos, what)
        if marker == _EOC:
            if frame[pos + 2 :] not in _PADDING:
                dropped.append(f"bytes after EOC ({end - pos - 2})")
            break
        if marker != _SOT or pos + 12 > end:
            raise DeidentificationError(f"{what} has marker {marker:04x} at {pos} where a tile part (SOT ff90) "
                                        "or EOC (ffd9) was expected; the codestream is damaged: re-export it")
        psot = struct.unpack(">I", frame[pos + 6 : pos + 10])[0]
        stop = _tile_part_end(frame, pos, psot, what)
        header: list[bytes] = [frame[pos : pos + 12]]
        count = len(dropped)
        body = _j2k_header(frame, pos + 12, _J2K_TILE, header, dropped, what, None)
        if _marker(frame, body, what) != _SOD:
            raise DeidentificationError(f"{what} tile part at {pos} has no SOD marker; re-export the image")
        tile_headers.extend(header[1:])
        part = b"".join(header) + frame[body:stop]
        if len(dropped) != count and psot:
            # Psot counts the whole tile part; it shrank by the COM segments just dropped.
            part = part[:6] + struct.pack(">I", len(part)) + part[10:]
            stale_tlm = True
        tiles.append(part)
        pos = stop
    main = _trim_quantization(main, tile_headers, dropped)
    if not dropped:
        return None
    if stale_tlm and main_tlm:
        dropped.append("TLM tile-part lengths (stale once a tile part shrank)")
        main = [segment for i, segment in enumerate(main) if i not in main_tlm]
    return b"".join(main) + b"".join(tiles) + b"\xff\xd9", dropped


def _trim_quantization(main: list[bytes], tile_headers: list[bytes], dropped: list[str]) -> list[bytes]:
    """Cut main-header QCD/QCC segments to the step sizes the deepest decomposition reads.

    A decoder reads one step size per subband (3 x levels + 1 of them) and ignores the rest, so text
    appended to a QCD still decodes (openjpeg does). The deepest level count of every COD and COC in
    the stream bounds what any tile-component reads; entries past it are dropped.
    """
    siz = next((seg for seg in main if seg[:2] == b"\xff\x51"), b"")
    wide = len(siz) >= 40 and struct.unpack(">H", siz[38:40])[0] >= 257  # Csiz: component index of 2 bytes
    levels = [seg[9] for seg in (*main, *tile_headers) if seg[:2] == b"\xff\x52" and len(seg) > 9]
    levels += [seg[6 + wide] for seg in (*main, *tile_headers) if seg[:2] == b"\xff\x53" and len(seg) > 6 + wide]
    if not levels:
        return main
    subbands = 3 * max(levels) + 1
    kept: list[bytes] = []
    for seg in main:
        head = 4 if seg[:2] == b"\xff\x5c" else 5 + wide if seg[:2] == b"\xff\x5d" else 0
        if head and len(seg) > head:
            style = seg[head] & 0x1F  # 0: one byte per subband, 1: one 2-byte value, 2: 2 bytes per subband
            need = head + 1 + (subbands if style == 0 else 2 if style == 1 else 2 * subbands)
            if len(seg) > need:
                name = "QCD" if head == 4 else "QCC"
                dropped.append(f"{name} entries past the last subband ({len(seg) - need} bytes)")
                seg = seg[:2] + struct.pack(">H", need - 2) + seg[4:need]
        kept.append(seg)
    return kept


def _marker(frame: bytes, pos: int, what: str) -> int:
    if pos + 2 > len(frame):
        raise DeidentificationError(f"{what} ends at byte {pos} without the EOC marker ffd9; the JPEG 2000 "
                                    "codestream is truncated: re-export the image")
    return int(struct.unpack(">H", frame[pos : pos + 2])[0])


def _j2k_header(frame: bytes, pos: int, allowed: set[int], kept: list[bytes], dropped: list[str], what: str,
                tlm: list[int] | None) -> int:
    """Copy the marker segments of a main or tile-part header into ``kept``; return where it ends."""
    while True:
        marker = _marker(frame, pos, what)
        if marker in (_SOT, _SOD, _EOC):
            return pos
        if pos + 4 > len(frame):
            raise DeidentificationError(f"{what} is cut inside marker {marker:04x}; re-export the image")
        stop = pos + 2 + struct.unpack(">H", frame[pos + 2 : pos + 4])[0]
        if stop > len(frame) or stop < pos + 4:
            raise DeidentificationError(f"{what} marker {marker:04x} at {pos} runs past the codestream; "
                                        "it is damaged: re-export the image")
        if marker == _COM:
            dropped.append(f"COM ({stop - pos - 4} bytes)")
        elif marker in allowed:
            if marker == _TLM and tlm is not None:
                tlm.append(len(kept))
            kept.append(frame[pos:stop])
        else:
            raise DeidentificationError(f"{what} has the JPEG 2000 marker {marker:04x} at {pos}, which the node "
                                        "does not know and so cannot prove free of text; re-export the image "
                                        "as a plain Part 1 or HTJ2K codestream")
        pos = stop


def _tile_part_end(frame: bytes, pos: int, psot: int, what: str) -> int:
    if psot == 0:
        # The last tile part may leave its length open: it then runs to the EOC that ends the stream.
        eoc = frame.rfind(b"\xff\xd9", pos + 12)
        if eoc < 0:
            raise DeidentificationError(f"{what} has an open-ended tile part and no EOC marker; re-export it")
        return eoc
    if psot < 14 or pos + psot > len(frame):
        raise DeidentificationError(f"{what} tile part at {pos} declares Psot {psot} bytes, {len(frame) - pos} "
                                    "are left; the codestream is damaged: re-export the image")
    return pos + psot


def _jp2_codestream(data: bytes, what: str) -> bytes:
    """Return the contents of the contiguous codestream box (jp2c) of a JP2 file."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            break
        if kind == b"jp2c":
            return data[pos + header : pos + size]
        pos += size
    raise DeidentificationError(f"{what} is a JP2 file without a readable codestream box (jp2c); re-export the "
                                "image as a bare JPEG 2000 codestream")
