"""Ingest of awkward entries: hidden files, links, FIFOs, sockets, unreadable and long-named files,
files that make the readers raise anything, a worker killed mid-file, and a second concurrent ingest."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import h5py
import pydicom
import pytest

from node import ingest_recovery
from node.errors import IngestError
from node.exit_codes import ExitCode
from node.ingest import Ingestor
from node.ingest_recovery import IngestLock
from node.node import Node
from node.quarantine import NotRegularFileError, file_identity, open_regular, remove_if_unchanged
from tests.conftest import NODE_PASSPHRASE
from tests.node.ingest_corpus import (
    bad_link_sinogram,
    catalog,
    children,
    dicom_bytes,
    kill,
    looping_sinogram,
    run_ingest,
    sha,
    start_ingest,
    write_sinogram,
)


@pytest.fixture
def node(make_node):  # type: ignore[no-untyped-def]
    return make_node(role=False)


def _skipped(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {Path(entry).name: reason for entry, reason in report.skipped}


def test_hidden_file_is_ingested(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / ".cache").mkdir(parents=True)
    (folder / ".hidden.dcm").write_bytes(dicom_bytes(patient="HID-1", instance=1))
    (folder / ".cache" / "b.dcm").write_bytes(dicom_bytes(patient="HID-1", instance=2))
    (folder / "visible.dcm").write_bytes(dicom_bytes(patient="HID-1", instance=3))
    report = Ingestor(node).run([folder])
    assert sorted(Path(s).name for s, _ in report.ingested) == [".hidden.dcm", "b.dcm", "visible.dcm"]
    assert report.skipped == []


def test_fifo_and_socket_are_reported_and_never_opened(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(dicom_bytes(patient="FIFO-1", instance=1))
    os.mkfifo(folder / "pipe.dcm")  # opening it for reading would block until a writer comes
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock"))
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(Ingestor(node, workers=1).run([folder])), daemon=True)
    worker.start()
    worker.join(timeout=120)
    listener.close()
    assert not worker.is_alive(), "the ingest blocked on the FIFO"
    (report,) = result
    skipped = _skipped(report)
    assert skipped["pipe.dcm"] == "a FIFO (named pipe), not a regular file: never opened"
    assert skipped["sock"] == "a socket, not a regular file: never opened"
    assert [Path(s).name for s, _ in report.ingested] == ["a.dcm"]
    assert report.exit_code == ExitCode.PARTIAL


def test_a_fifo_swapped_in_after_discovery_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "late.dcm")
    with pytest.raises(NotRegularFileError, match="is a FIFO"):
        open_regular(tmp_path / "late.dcm")
    (tmp_path / "target.dcm").write_bytes(b"x")
    (tmp_path / "link.dcm").symlink_to(tmp_path / "target.dcm")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        open_regular(tmp_path / "link.dcm")


def test_symbolic_links_are_reported_and_never_followed(node, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(dicom_bytes(patient="OUTSIDE-1", instance=1))
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "real.dcm").write_bytes(dicom_bytes(patient="LINK-1", instance=2))
    (folder / "to-outside.dcm").symlink_to(outside / "secret.dcm")
    (folder / "to-outside-dir").symlink_to(outside, target_is_directory=True)
    (folder / "to-inside.dcm").symlink_to(folder / "sub" / "real.dcm")
    (folder / "loop-a").symlink_to(folder / "loop-b")
    (folder / "loop-b").symlink_to(folder / "loop-a")
    (folder / "broken.dcm").symlink_to(folder / "nowhere.dcm")
    report = Ingestor(node).run([folder])
    assert [Path(s).name for s, _ in report.ingested] == ["real.dcm"]
    skipped = _skipped(report)
    assert skipped == {
        "to-outside.dcm": "symbolic link to a path outside the given folders: not followed",
        "to-outside-dir": "symbolic link to a path outside the given folders: not followed",
        "to-inside.dcm": "symbolic link to a path inside the given folders: not followed (the target is ingested "
                         "itself)",
        "loop-a": "symbolic link loop: not followed",
        "loop-b": "symbolic link loop: not followed",
        "broken.dcm": "broken symbolic link (its target does not exist): not followed",
    }
    records, _ = catalog(node)
    assert len(records) == 1
    assert (outside / "secret.dcm").exists()


def test_unreadable_and_missing_paths_are_reported(node, tmp_path: Path) -> None:
    # /proc/self/mem is a regular file that cannot be read from its start (EIO), even by root.
    report = Ingestor(node).run([Path("/proc/self/mem"), tmp_path / "missing"])
    assert report.skipped == [
        (str(tmp_path / "missing"), "cannot be read: No such file or directory"),
        ("/proc/self/mem", "cannot read: Input/output error"),
    ]
    assert report.quarantined == []
    assert report.exit_code == 1


def test_the_node_directory_is_never_ingested_from(make_node, tmp_path: Path) -> None:
    node = make_node("Inside", role=False)
    (tmp_path / "scan.dcm").write_bytes(dicom_bytes(patient="SELF-1", instance=1))
    first = Ingestor(node, keep_bad=True).run([tmp_path])  # tmp_path holds the node directory itself
    assert [Path(s).name for s, _ in first.ingested] == ["scan.dcm"]
    assert [Path(s).name for s, _ in first.quarantined] == ["deployment.json"]  # the test's manifest
    reason = "the node's own directory (or its store, quarantine or temporary files): never ingested from"
    assert (str(node.dir), reason) in first.skipped
    assert len(catalog(node)[0]) == 1
    # A folder inside the node given explicitly (the PACS inbox) is ingested; its store is not.
    inbox = node.dir / "pacs-inbox"
    inbox.mkdir()
    (inbox / "pulled.dcm").write_bytes(dicom_bytes(patient="SELF-2", instance=2))
    second = Ingestor(node).run([inbox, node.dir / "store"])
    assert [Path(s).name for s, _ in second.ingested] == ["pulled.dcm"]
    assert second.skipped == [(str(node.dir / "store"), reason)]


def test_a_250_character_file_name_is_quarantined(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    long_name = "x" * 246 + ".dcm"
    (folder / long_name).write_bytes(b"not dicom at all")
    (folder / "good.dcm").write_bytes(dicom_bytes(patient="LONG-1", instance=1))
    report = Ingestor(node).run([folder])
    assert [Path(s).name for s, _ in report.quarantined] == [long_name]
    assert len(report.ingested) == 1
    _, rows = catalog(node)
    (row,) = rows
    assert row.source_path == str(folder / long_name)
    assert (node.dir / row.quarantine_path).read_bytes() == b"not dicom at all"
    assert len(Path(row.quarantine_path).name) < 80
    assert not (folder / long_name).exists()


def test_any_exception_while_reading_a_file_quarantines_it_and_the_ingest_goes_on(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    bad_link_sinogram(folder / "a-flipped.h5", "FLIP-1")
    with h5py.File(folder / "a-flipped.h5", "r") as f, pytest.raises(RuntimeError, match="local heap"):
        "geometry" in f  # noqa: B015 - the lookup itself raises
    bad = [b"", b"text", b"\x89HDF\r\n\x1a\n" + b"\0" * 200, b"DICM" * 10]
    for i, data in enumerate(bad):  # sorted before the flipped file: moved out before it is read
        (folder / f"0-bad-{i}.dcm").write_bytes(data)
    for i in range(3):
        (folder / f"z-good-{i}.dcm").write_bytes(dicom_bytes(patient="FLIP-2", instance=i))
    flipped = sha(folder / "a-flipped.h5")
    report = Ingestor(node).run([folder])
    reasons = {Path(s).name: r for s, r in report.quarantined}
    assert set(reasons) == {"a-flipped.h5", "0-bad-0.dcm", "0-bad-1.dcm", "0-bad-2.dcm", "0-bad-3.dcm"}
    assert reasons["a-flipped.h5"].startswith("invalid CT sinogram file (")
    assert len(report.ingested) == 3
    records, rows = catalog(node)
    assert {r.source_sha256 for r in rows} == {sha(d) for d in bad} | {flipped}
    assert len(list((node.dir / "quarantine").glob("*.reason.txt"))) == len(rows) == 5
    assert len(records) == 3


def test_reasons_and_notes_carry_no_value_of_the_file(node, tmp_path: Path) -> None:
    marker = "MARKQZX"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "photometric.dcm").write_bytes(
        dicom_bytes(patient="VAL-1", instance=1, PhotometricInterpretation=marker))
    (folder / "charset.dcm").write_bytes(dicom_bytes(patient="VAL-1", instance=2, SpecificCharacterSet=marker))
    (folder / "nopixels.dcm").write_bytes(_without_pixels(dicom_bytes(patient="VAL-1", instance=3,
                                                                      SOPClassUID="1.2.3." + "4" * 8)))
    report = Ingestor(node).run([folder])
    reasons = dict((Path(s).name, r) for s, r in report.quarantined)
    assert reasons["photometric.dcm"].startswith("pixel data cannot be decoded (Explicit VR Little Endian): ")
    assert "Error: " in reasons["photometric.dcm"]  # the exception class is named
    assert "DICOM without pixel data (SOP class <value>)" in reasons["nopixels.dcm"]
    notes = [note for source, note in report.flags if source.endswith("charset.dcm")]
    assert "reader warning: UserWarning: Unknown encoding <value> - using default encoding instead" in notes
    text = repr(report) + "".join(p.read_text() for p in (node.dir / "quarantine").glob("*.reason.txt"))
    assert marker not in text
    assert "44444444" not in text


def _without_pixels(data: bytes) -> bytes:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_worker_killed_mid_file_costs_only_that_file(make_node, tmp_path: Path) -> None:
    node = make_node("Worker Kill", role=False)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(24):
        write_sinogram(folder / f"scan-{i:02d}.h5", f"WK-{i}", views=360, detectors=700, seed=i)
    proc = start_ingest(node.dir, "--workers", "2", str(folder))
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while not workers and time.monotonic() < deadline:
        stored = list((node.dir / "store").rglob("*.h5")) if (node.dir / "store").is_dir() else []
        workers = children(proc.pid) if len(stored) >= 2 else []
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.PARTIAL, out + err
    assert "Traceback" not in err
    assert "ingested 23, already present 0, quarantined 1, skipped 0" in out
    assert "the process reading it was killed by SIGKILL" in out
    records, (row,) = catalog(node)
    assert len(records) == 23
    assert row.reason == "the process reading it was killed by SIGKILL"
    assert sha(node.dir / row.quarantine_path) == row.source_sha256
    assert not Path(row.source_path).exists()


def test_a_second_ingest_on_the_same_node_is_refused(node, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a.dcm").write_bytes(dicom_bytes(patient="LOCK-1", instance=1))
    monkeypatch.setattr(ingest_recovery, "LOCK_WAIT", 0.3)
    with IngestLock(node.dir), pytest.raises(IngestError, match="another ingest is running on this node"):
        Ingestor(node).run([tmp_path / "a.dcm"])
    assert Ingestor(node).run([tmp_path / "a.dcm"]).ingested  # once the first has ended


def test_workers_and_in_process_ingest_give_the_same_catalog(make_node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(30):
        (folder / f"ct-{i:02d}.dcm").write_bytes(dicom_bytes(patient=f"SAME-{i % 4}", instance=i))
    for i in range(6):
        write_sinogram(folder / f"sino-{i}.h5", f"SAME-{i % 4}", seed=i)
    template = make_node("Twin", role=False)
    twin = tmp_path / "twin"
    shutil.copytree(template.dir, twin)
    parallel = Ingestor(template, workers=2).run([folder])
    serial = Ingestor(Node(twin, NODE_PASSPHRASE), workers=1).run([folder])
    assert len(parallel.ingested) == len(serial.ingested) == 36

    def rows(node_dir: Path):  # type: ignore[no-untyped-def]
        records, _ = catalog(Node(node_dir, NODE_PASSPHRASE))
        return sorted((r.record_id, r.source_sha256, r.patient_pseudonym, r.path) for r in records)

    assert rows(template.dir) == rows(twin)


def test_cli_prints_skipped_entries_and_no_traceback(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(dicom_bytes(patient="CLI-1", instance=1))
    os.mkfifo(folder / "pipe")
    result = run_ingest(node.dir, str(folder))
    assert result.returncode == ExitCode.PARTIAL, result.stdout + result.stderr
    assert "ingested 1, already present 0, quarantined 0, skipped 1" in result.stdout
    assert f"skipped {folder / 'pipe'}: a FIFO (named pipe), not a regular file: never opened" in result.stdout
    assert result.stderr == ""


def test_killed_ingest_leaves_no_worker_behind(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(16):
        write_sinogram(folder / f"scan-{i:02d}.h5", f"ORPHAN-{i}", views=360, detectors=700, seed=i)
    proc = start_ingest(node.dir, "--workers", "2", str(folder))
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = children(proc.pid)
    kill(proc)
    time.sleep(1.0)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert alive == []
    assert run_ingest(node.dir, str(folder)).returncode == 0  # the lock was released with them


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return text[text.rindex(")") + 2 :].split()[0]


def test_a_file_that_makes_the_reader_loop_is_stopped_and_quarantined(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    looping_sinogram(folder / "loops.h5")
    for i in range(3):
        (folder / f"ct-{i}.dcm").write_bytes(dicom_bytes(patient="LOOP-2", instance=i))
    result = run_ingest(node.dir, "--file-timeout", "3", str(folder), timeout=300)
    assert result.returncode == ExitCode.PARTIAL, result.stdout + result.stderr
    assert "ingested 3, already present 0, quarantined 1, skipped 0" in result.stdout
    _, (row,) = catalog(node)
    assert row.reason == "reading it took longer than 3 s, so it was stopped (damage can make a reader loop)"
    assert Path(row.source_path).name == "loops.h5"


def test_a_file_that_de_identifies_to_a_stored_record_is_already_present(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = dicom_bytes(patient="TWIN-1", instance=1)
    (folder / "a.dcm").write_bytes(data)
    (folder / "b.dcm").write_bytes(b"other preamble".ljust(128, b"\0") + data[128:])  # the preamble is not kept
    first = Ingestor(node).run([folder])
    assert ([Path(s).name for s, _ in first.ingested], [Path(s).name for s in first.duplicates]) == (["a.dcm"],
                                                                                                     ["b.dcm"])
    again = Ingestor(node).run([folder])
    assert (again.ingested, sorted(Path(s).name for s in again.duplicates)) == ([], ["a.dcm", "b.dcm"])
    assert len(catalog(node)[0]) == 1


def test_a_patient_the_catalog_already_knows_keeps_its_pseudonym(node, tmp_path: Path) -> None:
    from node.catalog import Patient
    from node.vault import VaultEntry, derive_pseudonym

    vault = node.vault  # a pseudonym made before pseudonyms were derived from the lookup secret
    legacy = VaultEntry("MTP-000000LEGACY", "OLD-1", -400, None)
    with node.sessions() as s:
        s.add(Patient(pseudonym=legacy.pseudonym, lookup=vault.lookup("OLD-1"), sealed=vault.seal(legacy)))
        s.commit()
    (tmp_path / "old.dcm").write_bytes(dicom_bytes(patient="OLD-1", instance=1))
    (tmp_path / "new.dcm").write_bytes(dicom_bytes(patient="NEW-1", instance=2))
    report = Ingestor(node).run([tmp_path / "old.dcm", tmp_path / "new.dcm"])
    assert len(report.ingested) == 2
    by_source = {Path(s).name: r for s, r in report.ingested}
    records = {r.record_id: r for r in catalog(node)[0]}
    old = records[by_source["old.dcm"]]
    assert old.patient_pseudonym == "MTP-000000LEGACY"
    original = dt.date.fromisoformat(pydicom.dcmread(tmp_path / "old.dcm").StudyDate)
    assert pydicom.dcmread(node.dir / old.path).StudyDate == (original - dt.timedelta(days=400)).strftime("%Y%m%d")
    with node.sessions() as s:
        new = vault.find(s, "NEW-1")
    assert new is not None
    assert records[by_source["new.dcm"]].patient_pseudonym == new.pseudonym
    assert new.pseudonym == derive_pseudonym(node.secrets.lookup_secret, "NEW-1")[0]


def test_a_quarantined_source_changed_after_it_was_read_is_left_in_place(tmp_path: Path) -> None:
    source = tmp_path / "bad.dcm"
    source.write_bytes(b"as read")
    with open_regular(source) as fh:
        identity = file_identity(fh)
    time.sleep(0.01)
    source.write_bytes(b"written over meanwhile")  # same path, another file now
    assert remove_if_unchanged(source, identity) == "copied to the quarantine but not removed: it changed after it " \
                                                    "was read"
    assert source.read_bytes() == b"written over meanwhile"
    with open_regular(source) as fh:
        identity = file_identity(fh)
    assert remove_if_unchanged(source, identity) is None
    assert not source.exists()


def test_raw_file_written_over_during_its_ingest_is_not_stored(node, tmp_path: Path, monkeypatch) -> None:
    # Raw files are validated and rebuilt from their path after the bytes were read and hashed;
    # an export still being written changes under the ingest. The record must not pair one
    # version's hash with another version's content.
    import node.raw_deid as raw_deid

    folder = tmp_path / "in"
    folder.mkdir()
    source = folder / "scan.h5"
    write_sinogram(source, "RAW-CHANGING-1")
    rebuild = raw_deid.deidentify_raw

    def written_over(fmt, path, patient, uids):  # type: ignore[no-untyped-def]
        write_sinogram(path, "RAW-CHANGING-2")  # the exporter rewrites the file meanwhile
        return rebuild(fmt, path, patient, uids)

    monkeypatch.setattr(raw_deid, "deidentify_raw", written_over)
    report = Ingestor(node, workers=1).run([folder])
    assert report.ingested == []
    assert [reason for _, reason in report.quarantined] == [
        "the file changed while it was being ingested (is it still being written?); ingest it again once it is complete"
    ]
    assert source.exists()  # another file than the one read: never removed
