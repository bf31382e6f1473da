"""Ingest files and folders into the node: validate, de-identify, store, catalog, report.

Nothing is lost and nothing is skipped silently: every entry under the given paths ends up
ingested, known already (a duplicate), quarantined with its reason, or skipped with its
reason (not a regular file, a symbolic link, unreadable: see :mod:`node.discover`).

Worker processes read, parse, de-identify and store files in parallel
(:mod:`node.ingest_pool`); this process is the catalog's only writer and applies their
outcomes in file order. The per-file protocol makes every step recoverable after a kill at
any instant (docs/node.md, "Interrupted ingests"):

1. a good file's de-identified bytes are put in the content-addressed store (atomic rename);
   its catalog row follows in the next batch commit; the source is never touched;
2. a bad file's copy and reason file are written into the quarantine (atomic renames); its
   catalog row follows in the next batch commit; only after that commit is the source
   removed (unless ``keep_bad``);
3. at the start of every ingest, under the node's ingest lock, temporary files are removed
   and, if the previous run did not finish, stored files and quarantine copies without a
   committed row are removed (:mod:`node.ingest_recovery`); their sources are still in
   place and are simply ingested again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from node.catalog import Patient, QuarantineEntry, Record
from node.deid import DeidPolicy
from node.discover import discover
from node.errors import IngestError
from node.exit_codes import ExitCode
from node.ingest_pool import FILE_SECONDS, default_workers, outcomes
from node.ingest_recovery import IngestLock, recover
from node.ingest_work import TMP_DIR, Bad, Broken, Crashed, FileTask, Known, Outcome, Stored, Unread, WorkContext
from node.node import Node
from node.quarantine import QUARANTINE_DIR, FileIdentity, NotRegularFileError, keep_from_source, remove_if_unchanged
from node.sidecar import Sidecar, SidecarRow, read_sidecar
from node.store import STORE_DIR
from node.vault import VaultEntry

__all__ = [
    "IngestReport", "Ingestor", "Sidecar", "SidecarRow",
    "iter_report_lines", "read_sidecar",
]

#: Exit codes of ``metai-node ingest``.
#: A batch is committed after this many seconds even if it is not full.
BATCH_SECONDS = 2.0


@dataclass
class IngestReport:
    """The outcome of one ingest run, entry by entry."""

    ingested: list[tuple[str, str]] = field(default_factory=list)  # (source, record id)
    duplicates: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason): not read, left in place
    flags: list[tuple[str, str]] = field(default_factory=list)  # (source, note)
    recovery: list[str] = field(default_factory=list)  # what was undone of an interrupted run

    @property
    def exit_code(self) -> ExitCode:
        """0: every entry ingested or already present; 2: some quarantined or skipped; 1: none ingested."""
        if not self.quarantined and not self.skipped:
            return ExitCode.OK
        return ExitCode.PARTIAL if self.ingested or self.duplicates else ExitCode.FAILED


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
        workers: worker processes (default: the CPUs this process may use, at least 2); 1 works
            in this process, where a reader that crashes or loops on a damaged file cannot be
            stopped (for debugging).
        file_seconds: a worker still reading one file after this many seconds (plus one per MB
            of the file) is stopped and the file quarantined.
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
        workers: int | None = None,
        file_seconds: float = FILE_SECONDS,
    ) -> None:
        if workers is not None and workers < 1:
            raise IngestError(f"workers is {workers}, expected 1 or more (1 works in the ingest's own process)")
        self.node = node
        self.keep_bad = keep_bad
        self.sidecar = sidecar or {}
        self.default_patient = default_patient
        self.policy = policy or DeidPolicy()
        self.batch = batch
        self.workers = workers or default_workers()
        self.file_seconds = file_seconds

    def run(
        self, paths: Sequence[Path], *, progress: Callable[[int, int, str], None] | None = None,
        skip: Iterable[Path] = (),
    ) -> IngestReport:
        """Ingest every file under ``paths``; ``progress(done, total, name)`` after each file.

        Raises:
            IngestError: another ingest is running on this node, or the node cannot store its
                work (e.g. a full disk); what was done is kept and a rerun finishes the job.
        """
        node_dir = self.node.dir
        found = discover(paths, skip, exclude=[node_dir],
                         protect=[node_dir / STORE_DIR, node_dir / QUARANTINE_DIR, node_dir / TMP_DIR])
        report = IngestReport(skipped=list(found.skipped))
        tasks = [FileTask(i, str(path), name, size) for i, (path, name, size) in enumerate(found.files)]
        with IngestLock(self.node.dir) as lock:
            report.recovery = recover(self.node, full=not lock.previous_clean).lines()
            with self.node.sessions() as session:  # what the workers need to know, read once
                sources = frozenset(session.scalars(select(Record.source_sha256)))
                records = set(session.scalars(select(Record.record_id)))
                patients = {p.lookup: (p.pseudonym, p.sealed) for p in session.scalars(select(Patient))}
            ctx = WorkContext(self.node.dir, self.node.secrets, self.sidecar, self.default_patient, self.policy,
                              sources, patients)
            writer = _Writer(self.node, report, self.batch, self.keep_bad, records, {p for p, _ in patients.values()})
            stream = outcomes(tasks, ctx, workers=self.workers, file_seconds=self.file_seconds)
            try:
                for done, outcome in enumerate(stream, start=1):
                    task = tasks[outcome.index]
                    writer.apply(task, outcome)
                    if progress is not None:
                        progress(done, len(tasks), task.name)
                writer.commit()
            finally:
                stream.close()  # stops the workers now, before the lock is released
                writer.close()  # uncommitted work of an interrupted run is undone by the next one's recovery
            lock.mark_clean()
        return report


class _Writer:
    """The catalog's single writer: applies outcomes in order, commits in batches."""

    def __init__(self, node: Node, report: IngestReport, batch: int, keep_bad: bool, record_ids: set[str],
                 pseudonyms: set[str]) -> None:
        self.node = node
        self.report = report
        self.batch = batch
        self.keep_bad = keep_bad
        self.session: Session | None = None
        self.records: list[dict[str, Any]] = []
        self.patients: list[dict[str, Any]] = []
        self.bad: list[dict[str, Any]] = []
        self.to_remove: list[tuple[Path, FileIdentity]] = []  # quarantined sources: removed once their rows are in
        self.sources: set[str] = set()  # source sha256 ingested in this run
        self.record_ids = record_ids  # in the catalog, or added in this run
        self.known_patients = pseudonyms
        self.quarantine_rows: set[tuple[str, str]] = set()
        self.pending = 0
        self.since = time.monotonic()

    def apply(self, task: FileTask, outcome: Outcome) -> None:
        source = task.path
        self.report.flags.extend((source, f"reader warning: {note}") for note in outcome.notes)
        if isinstance(outcome, Stored):
            self._stored(source, outcome)
        elif isinstance(outcome, Known):
            self.report.duplicates.append(source)
        elif isinstance(outcome, Bad):
            self._bad(Path(source), outcome.source_sha256, outcome.reason, outcome.quarantine_path, outcome.identity)
        elif isinstance(outcome, Crashed):
            self._crashed(Path(source), outcome.reason)
        elif isinstance(outcome, Unread):
            self.report.skipped.append((source, outcome.reason))
        elif isinstance(outcome, Broken):
            raise IngestError(f"{source}: {outcome.message}; fix the node directory and run the ingest again")
        else:
            raise TypeError(f"unknown outcome {outcome!r}")
        self.pending += 1
        if self.pending >= self.batch or time.monotonic() - self.since >= BATCH_SECONDS:
            self.commit()

    def _stored(self, source: str, out: Stored) -> None:
        if out.source_sha256 in self.sources or out.record_id in self.record_ids:
            # The same file earlier in this run, or a file that de-identified to a record already
            # stored (in this run or before).
            self.report.duplicates.append(source)
            return
        self.sources.add(out.source_sha256)
        self.record_ids.add(out.record_id)
        if out.pseudonym not in self.known_patients:
            self.known_patients.add(out.pseudonym)
            vault = self.node.vault
            entry = VaultEntry(out.pseudonym, out.local_id, out.date_shift_days, None)
            self.patients.append({"pseudonym": out.pseudonym, "lookup": vault.lookup(out.local_id),
                                  "sealed": vault.seal(entry)})
        self.records.append({
            "record_id": out.record_id, "source_sha256": out.source_sha256, "patient_pseudonym": out.pseudonym,
            "kind": out.kind, "modality": out.modality, "format": out.format, "path": out.path, "size": out.size,
            "synthetic": out.synthetic, "label": out.label, "study_uid": out.study_uid, "series_uid": out.series_uid,
        })
        self.report.ingested.append((source, out.record_id))
        self.report.flags.extend((source, flag) for flag in out.flags)

    def _bad(self, source: Path, sha: str, reason: str, quarantine_path: str, identity: FileIdentity) -> None:
        key = (sha, reason)
        if key not in self.quarantine_rows:
            self.quarantine_rows.add(key)
            exists = self._session().scalar(select(QuarantineEntry.id).where(
                QuarantineEntry.source_sha256 == sha, QuarantineEntry.reason == reason))
            if exists is None:
                self.bad.append({"source_path": str(source), "source_sha256": sha,
                                 "quarantine_path": quarantine_path, "reason": reason})
        if not self.keep_bad:
            self.to_remove.append((source, identity))
        self.report.quarantined.append((str(source), reason))

    def _crashed(self, source: Path, reason: str) -> None:
        try:
            sha, rel, identity = keep_from_source(self.node.dir, source, reason)
        except NotRegularFileError as exc:
            self.report.skipped.append((str(source), f"{exc.kind}, not a regular file: never read"))
            return
        except OSError as exc:
            self.report.skipped.append((str(source), f"{reason}; and it cannot be read again: {exc.strerror}"))
            return
        self._bad(source, sha, reason, rel, identity)

    def commit(self) -> None:
        """Write the batch's rows in one transaction; then remove the quarantined sources."""
        session = self._session()
        if self.patients:
            session.execute(insert(Patient), self.patients)
        if self.records:
            session.execute(insert(Record), self.records)
        if self.bad:
            session.execute(insert(QuarantineEntry), self.bad)
        session.commit()
        self.patients, self.records, self.bad = [], [], []
        for source, identity in self.to_remove:
            problem = remove_if_unchanged(source, identity)
            if problem is not None:
                self.report.flags.append((str(source), problem))
        self.to_remove = []
        self.pending = 0
        self.since = time.monotonic()

    def close(self) -> None:
        """Drop what is not committed (the next run's recovery removes its files)."""
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.session.rollback()
            self.session.close()
            self.session = None

    def _session(self) -> Session:
        if self.session is None:
            self.session = self.node.sessions()
        return self.session


def iter_report_lines(report: IngestReport) -> Iterator[str]:
    """Lines of the final report for people."""
    yield from report.recovery
    yield (f"ingested {len(report.ingested)}, already present {len(report.duplicates)}, "
           f"quarantined {len(report.quarantined)}, skipped {len(report.skipped)}")
    for source, reason in report.quarantined:
        yield f"  quarantined {source}: {reason}"
    for entry, reason in report.skipped:
        yield f"  skipped {entry}: {reason}"
    for source, note in report.flags:
        yield f"  note {source}: {note}"
