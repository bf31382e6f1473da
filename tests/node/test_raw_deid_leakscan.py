"""The leak scanner finds a marker in every form a writer could leave it in, and nothing in a clean tree."""

from __future__ import annotations

import base64
import gzip
import sqlite3
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.node.leakscan import Hit, forms, scan_tree

MARKER = "MARK-0042-QZX"


def hows(hits: list[Hit], marker: str = MARKER) -> set[str]:
    return {h.how for h in hits if h.marker == marker}


def test_a_plain_marker_is_found_and_its_file_named(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "ingest.log").write_bytes(b"... patient " + MARKER.encode() + b" ingested\n")
    (tmp_path / "other.txt").write_text("nothing here\n")
    assert scan_tree(tmp_path, [MARKER, "MARK-9999-ABC"]) == [Hit("logs/ingest.log", MARKER, "plain")]


def test_hidden_and_sqlite_side_files_are_scanned(tmp_path: Path) -> None:
    (tmp_path / "store" / "ab").mkdir(parents=True)
    (tmp_path / "store" / "ab" / ".tmp-x1y2").write_bytes(MARKER.encode())
    (tmp_path / "catalog.sqlite-wal").write_bytes(b"\x00" * 100 + MARKER.encode())
    assert {h.file for h in scan_tree(tmp_path, [MARKER])} == {"store/ab/.tmp-x1y2", "catalog.sqlite-wal"}


@pytest.mark.parametrize(("codec", "how"), [("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be")])
def test_a_utf16_marker_is_found(tmp_path: Path, codec: str, how: str) -> None:
    (tmp_path / "notes.bin").write_bytes(b"\x01\x02" + MARKER.encode(codec) + b"\x03")
    assert hows(scan_tree(tmp_path, [MARKER])) == {how}


def test_a_marker_in_a_utf16_sqlite_database_is_found(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    db.execute('PRAGMA encoding = "UTF-16le"')
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES (?)", (f"reason: {MARKER}",))
    db.commit()
    db.close()
    assert "utf-16-le" in hows(scan_tree(tmp_path, [MARKER]))


@pytest.mark.parametrize("lead", [0, 1, 2])
def test_a_base64_marker_is_found_at_every_alignment(tmp_path: Path, lead: int) -> None:
    encoded = base64.b64encode(b"x" * lead + MARKER.encode() + b"yz")
    (tmp_path / "header.xml").write_bytes(b"<value>" + encoded + b"</value>")
    assert hows(scan_tree(tmp_path, [MARKER])) == {f"base64/{lead}"}


@pytest.mark.parametrize("before", [b"", b"a", b"ab", b"\xff\xfe\xfd", b"0123"])
@pytest.mark.parametrize("after", [b"", b"!", b"?!?"])
def test_base64_forms_do_not_depend_on_the_neighbouring_bytes(before: bytes, after: bytes) -> None:
    encoded = base64.b64encode(before + MARKER.encode() + after)
    assert any(form in encoded for name, form in forms(MARKER).items() if name.startswith("base64/"))


def test_a_marker_in_a_zlib_stream_at_an_odd_offset_is_found(tmp_path: Path) -> None:
    noise = np.random.default_rng(5).integers(0, 256, 3001, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(noise + zlib.compress(b"some text " + MARKER.encode() * 3) + noise)
    found = hows(scan_tree(tmp_path, [MARKER]))
    assert found == {f"zlib@{len(noise)}/plain"}


def test_a_marker_in_a_gzip_member_is_found(tmp_path: Path) -> None:
    (tmp_path / "cohort.json.gz").write_bytes(gzip.compress(MARKER.encode("utf-16-le")))
    assert hows(scan_tree(tmp_path, [MARKER])) == {"gzip@0/utf-16-le"}


def test_a_marker_in_a_gzip_compressed_hdf5_chunk_is_found(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "record.h5", "w") as f:
        text = np.frombuffer((b"padding " * 500) + MARKER.encode() + b" end", dtype=np.uint8)
        f.create_dataset("payload", data=text, chunks=(512,), compression="gzip")
    assert MARKER.encode() not in (tmp_path / "record.h5").read_bytes()  # only compressed bytes on disk
    found = hows(scan_tree(tmp_path, [MARKER]))
    assert any(h.startswith("hdf5-chunk /payload[") for h in found)
    assert any(h.startswith("zlib@") for h in found)
    assert "hdf5 payload/plain" in found


def test_a_marker_behind_shuffle_and_gzip_is_found_in_the_decoded_content(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "record.h5", "w") as f:
        f.create_dataset("names", data=np.array([MARKER.encode()] * 50), compression="gzip", shuffle=True)
    found = hows(scan_tree(tmp_path, [MARKER]))
    assert found == {"hdf5 names/plain"}  # shuffled bytes hide it from every byte-level form


def test_markers_in_hdf5_names_links_and_attributes_are_found(tmp_path: Path) -> None:
    names = [f"MARK-00{i}0-ABC" for i in range(1, 6)]
    with h5py.File(tmp_path / "record.h5", "w") as f:
        group = f.create_group(names[0])
        group.attrs[names[1]] = np.array([names[2]], dtype=h5py.string_dtype())
        f[names[3]] = h5py.SoftLink("/" + names[4])
    found = {h.marker for h in scan_tree(tmp_path, names)}
    assert found == set(names)


def test_a_clean_tree_has_no_hits(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "record.h5", "w") as f:
        f.create_dataset("data", data=np.random.default_rng(1).normal(size=(64, 64)), compression="gzip")
        f.attrs["note"] = "MARK-0042-QZY"  # differs in the last letter
    (tmp_path / "blob.gz").write_bytes(gzip.compress(b"MARK-0042 QZX"))
    assert scan_tree(tmp_path, [MARKER]) == []


def test_values_an_hdf5_file_keeps_in_a_file_outside_the_root_are_not_counted(tmp_path: Path) -> None:
    # The scanner reports what is under the root: a dataset whose values are in an outside file
    # (external raw storage) holds none of them, while the same file under the root is found.
    root, outside = tmp_path / "node", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    raw = (MARKER.encode() * 4)[:48]
    (outside / "values.bin").write_bytes(raw)
    with h5py.File(root / "refers.h5", "w") as f:
        f.create_dataset("v", shape=(len(raw),), dtype="u1", external=[(str(outside / "values.bin"), 0, len(raw))])
        assert bytes(f["v"][()]) == raw  # h5py does read the outside file
    assert scan_tree(root, [MARKER]) == []
    (root / "values.bin").write_bytes(raw)
    assert hows(scan_tree(root, [MARKER])) == {"plain"}
