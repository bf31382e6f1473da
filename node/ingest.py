"""Ingest files and folders into the node: validate, de-identify, store, catalog, report.

Nothing is lost and nothing is skipped silently: every input file ends up ingested, known
already (a duplicate), or quarantined with its reason. A quarantined file is moved into
``<node>/quarantine`` next to a ``.reason.txt`` (copied instead with ``keep_bad``); good source
files are never modified. Work is
committed in small batches, so an interrupted ingest loses at most one batch and simply
finishes the job when run again (content addressing makes every step idempotent).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.catalog import QuarantineEntry, Record
from node.deid import DeidPolicy, PatientContext, UidMapper
from node.errors import IngestError
from node.formats import deidentify, parse
from node.node import Node
from node.store import put
from node.vault import VaultEntry

QUARANTINE_DIR = "quarantine"
TMP_DIR = "tmp"
#: Exit codes of ``metai-node ingest``.
EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 1, 2


@dataclass(frozen=True)
class SidecarRow:
    """What a CSV sidecar says about one file."""

    label: str | None
    patient_id: str | None


class Sidecar(dict[str, SidecarRow]):
    """A sidecar's rows by its ``file`` column, and the folder the sidecar lies in."""

    def __init__(self, rows: dict[str, SidecarRow], folder: Path) -> None:
        super().__init__(rows)
        self.folder = folder.resolve()

    def relative_name(self, path: Path) -> str:
        """``path`` as the sidecar's own folder names it (``..`` where it lies outside)."""
        return os.path.relpath(path.resolve(), self.folder)


@dataclass
class IngestReport:
    """The outcome of one ingest run, file by file."""

    ingested: list[tuple[str, str]] = field(default_factory=list)  # (source, record id)
    duplicates: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    flags: list[tuple[str, str]] = field(default_factory=list)  # (source, note)

    @property
    def exit_code(self) -> int:
        """0: every file ingested or already present; 2: some quarantined; 1: none ingested."""
        if not self.quarantined:
            return EXIT_OK
        return EXIT_PARTIAL if self.ingested or self.duplicates else EXIT_FAILED


def read_sidecar(path: Path) -> Sidecar:
    """Read a CSV sidecar with columns ``file`` and ``label`` (and optionally ``patient_id``).

    ``file`` is matched against each input's path relative to the sidecar's own folder, its
    path relative to the folder given to ingest, or its bare file name.

    Raises:
        IngestError: unreadable, or without a ``file`` column.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "file" not in reader.fieldnames:
                raise IngestError(f"{path}: the sidecar needs a 'file' column (and 'label', 'patient_id')")
            rows = {}
            for row in reader:
                rows[row["file"].strip()] = SidecarRow(
                    (row.get("label") or "").strip() or None, (row.get("patient_id") or "").strip() or None
                )
            return Sidecar(rows, path.parent)
    except OSError as exc:
        raise IngestError(f"cannot read sidecar {path}: {exc.strerror}") from exc


def discover(paths: Sequence[Path], skip: Iterable[Path] = ()) -> list[tuple[Path, str]]:
    """Expand files and folders (recursively, sorted) into (file, name relative to its root)."""
    skipped = {p.resolve() for p in skip}
    found: list[tuple[Path, str]] = []
    for root in paths:
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file() and not p.name.startswith(".") and p.resolve() not in skipped:
                    found.append((p, p.relative_to(root).as_posix()))
        elif root.resolve() not in skipped:
            found.append((root, root.name))
    return found


class Ingestor:
    """Runs ingests into one node.

    Parameters:
        node: the node (unlocked: de-identification needs its secrets).
        sidecar: labels and patient ids by file name.
        default_patient: local patient id for objects that name none (e.g. phantom raw data).
        policy: de-identification options.
        batch: files per catalog commit.
        keep_bad: copy bad files into the quarantine instead of moving them there (for sources
            that must stay untouched, e.g. a read-only export).
    """

    def __init__(
        self,
        node: Node,
        *,
        sidecar: dict[str, SidecarRow] | None = None,
        default_patient: str | None = None,
        policy: DeidPolicy | None = None,
        batch: int = 50,
        keep_bad: bool = False,
    ) -> None:
        self.node = node
        self.keep_bad = keep_bad
        self.sidecar = sidecar or {}
        self.default_patient = default_patient
        self.policy = policy or DeidPolicy()
        self.batch = batch
        self._uids = UidMapper(node.secrets.uid_secret)
        self._patients: dict[str, VaultEntry] = {}

    def run(
        self, paths: Sequence[Path], *, progress: Callable[[int, int, str], None] | None = None,
        skip: Iterable[Path] = (),
    ) -> IngestReport:
        """Ingest every file under ``paths``; ``progress(done, total, name)`` after each file."""
        files = discover(paths, skip)
        report = IngestReport()
        self._patients.clear()
        session = self.node.sessions()
        try:
            for done, (path, name) in enumerate(files, start=1):
                self._one(session, path, name, report)
                if done % self.batch == 0:
                    session.commit()
                if progress is not None:
                    progress(done, len(files), name)
            session.commit()
        finally:
            session.close()  # uncommitted work of an interrupted run is redone next time
        return report

    def _one(self, session: Session, path: Path, name: str, report: IngestReport) -> None:
        try:
            content = path.read_bytes()
        except OSError as exc:
            report.quarantined.append((str(path), f"cannot read: {exc.strerror}"))
            return
        source_sha = hashlib.sha256(content).hexdigest()
        if session.scalar(select(Record.record_id).where(Record.source_sha256 == source_sha)):
            report.duplicates.append(str(path))
            return
        savepoint = session.begin_nested()
        try:
            record, flags = self._ingest(session, path, name, content, source_sha)
        except IngestError as exc:
            savepoint.rollback()
            self._patients.clear()  # a patient created inside the savepoint is gone with it
            self._quarantine(session, path, content, source_sha, str(exc))
            report.quarantined.append((str(path), str(exc)))
            return
        savepoint.commit()
        if record is None:
            report.duplicates.append(str(path))
        else:
            report.ingested.append((str(path), record))
            report.flags.extend((str(path), f) for f in flags)

    def _ingest(self, session: Session, path: Path, name: str, content: bytes,
                source_sha: str) -> tuple[str | None, tuple[str, ...]]:
        parsed = parse(path, content)
        side = self.sidecar.get(name) or self.sidecar.get(path.name)
        if side is None and isinstance(self.sidecar, Sidecar):
            side = self.sidecar.get(self.sidecar.relative_name(path))
        side = side or SidecarRow(None, None)
        local_id = parsed.local_patient_id or side.patient_id or self.default_patient
        if local_id is None:
            raise IngestError(
                "names no patient (no PatientID / patientID / patient_id): give one in the sidecar's "
                "patient_id column or with --patient"
            )
        entry = self._patients.get(local_id)
        if entry is None:  # a folder holds many objects of one patient: unseal each entry once
            entry = self._patients[local_id] = self.node.vault.get_or_create(session, local_id)
        processed = deidentify(parsed, PatientContext(entry.pseudonym, entry.date_shift_days), self._uids,
                               self.policy, self.node.dir / TMP_DIR)
        record_id, rel = put(self.node.dir, processed.content, processed.suffix)
        if session.get(Record, record_id) is not None:
            return None, ()  # another source de-identified to identical content
        session.add(Record(
            record_id=record_id, source_sha256=source_sha, patient_pseudonym=entry.pseudonym,
            kind=int(parsed.kind), modality=parsed.modality[:16], format=parsed.format, path=rel,
            size=len(processed.content), synthetic=parsed.synthetic, label=side.label,
            study_uid=processed.study_uid, series_uid=processed.series_uid,
        ))
        session.flush()
        return record_id, processed.flags

    def _quarantine(self, session: Session, path: Path, content: bytes, source_sha: str, reason: str) -> None:
        qdir = self.node.dir / QUARANTINE_DIR
        qdir.mkdir(parents=True, exist_ok=True)
        dest = qdir / f"{source_sha[:12]}-{path.name}"
        if not dest.exists():
            shutil.copyfile(path, dest) if content else dest.touch()
        dest.with_name(dest.name + ".reason.txt").write_text(f"{path}\n{reason}\n", encoding="utf-8")
        if not self.keep_bad:
            # Moved: the copy and its reason are safely in place before the source goes. A
            # read-only source keeps its file (the quarantine still holds the copy and reason).
            with contextlib.suppress(OSError):
                path.unlink()
        exists = session.scalar(select(QuarantineEntry.id).where(
            QuarantineEntry.source_sha256 == source_sha, QuarantineEntry.reason == reason))
        if exists is None:
            session.add(QuarantineEntry(source_path=str(path), source_sha256=source_sha,
                                        quarantine_path=str(dest.relative_to(self.node.dir)), reason=reason))


def iter_report_lines(report: IngestReport) -> Iterator[str]:
    """Lines of the final report for people."""
    yield (f"ingested {len(report.ingested)}, already present {len(report.duplicates)}, "
           f"quarantined {len(report.quarantined)}")
    for source, reason in report.quarantined:
        yield f"  quarantined {source}: {reason}"
    for source, note in report.flags:
        yield f"  note {source}: {note}"
