"""The work on one file of an ingest: read, hash, parse, de-identify, store or quarantine.

:func:`process_file` runs in the ingest's worker processes (or in the ingest's own process
with one worker). It never raises for a problem of the file: whatever goes wrong becomes an
outcome with a reason, and what the libraries warn or log while reading the file is caught
and turned into value-free notes, so no element value reaches a terminal or a log. The
catalog is neither written nor read here: workers get a snapshot of what they need when they
start (the sources already ingested, the patients already known) and the outcome goes to the
ingest's single writer. A forked worker therefore never touches SQLite, whose connections
must not cross a fork.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from node.deid import DeidPolicy, PatientContext, UidMapper
from node.errors import IngestError, NodeError
from node.formats import deidentify, parse
from node.keys import NodeSecrets
from node.quarantine import FileIdentity, NotRegularFileError, file_identity, keep, open_regular
from node.redact import describe, value_free
from node.redact_view import decoded_view
from node.sidecar import SidecarRow, sidecar_row
from node.store import put
from node.vault import Vault, derive_pseudonym
from raw_data.formats import DICOM_FORMAT

TMP_DIR = "tmp"
#: Loggers of the libraries that read file content; their records are caught per file.
CAPTURED_LOGGERS = ("pydicom", "h5py", "raw_data", "PIL")
NO_PATIENT = (
    "names no patient (no PatientID / patientID / patient_id): give one in the sidecar's patient_id column "
    "or with --patient"
)


@dataclass(frozen=True)
class FileTask:
    """One file to ingest: its position in the run, path, name relative to its root, size in bytes."""

    index: int
    path: str
    name: str
    size: int = 0


@dataclass(frozen=True)
class Outcome:
    """What became of one file; ``notes`` are value-free warnings caught while reading it."""

    index: int
    notes: tuple[str, ...] = field(default=(), kw_only=True)


@dataclass(frozen=True)
class Stored(Outcome):
    """De-identified and in the store; the catalog row is still to be written."""

    source_sha256: str
    record_id: str
    path: str
    size: int
    kind: int
    modality: str
    format: str
    synthetic: bool
    label: str | None
    study_uid: str | None
    series_uid: str | None
    pseudonym: str
    local_id: str
    date_shift_days: int
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Known(Outcome):
    """Already in the catalog: the same file was ingested before."""

    source_sha256: str


@dataclass(frozen=True)
class Bad(Outcome):
    """Not ingestible: copied into the quarantine with its reason; the row is still to be written."""

    source_sha256: str
    reason: str
    quarantine_path: str
    identity: FileIdentity


@dataclass(frozen=True)
class Unread(Outcome):
    """Not read at all (not a regular file, or unreadable): left where it is."""

    reason: str


@dataclass(frozen=True)
class Broken(Outcome):
    """The node itself failed (e.g. its disk is full): the ingest cannot go on."""

    message: str


@dataclass(frozen=True)
class Crashed(Outcome):
    """The work on the file ended outside its error handling (its process died, or a bug)."""

    reason: str


@dataclass
class WorkContext:
    """What every worker needs, given once when it starts (workers never ask the catalog writer).

    ``known_sources`` holds the sha256 of every file already ingested; ``known_patients`` the
    catalog's patients as lookup HMAC -> (pseudonym, sealed vault entry), both taken when the
    ingest starts (it holds the node's ingest lock, so nothing else changes them meanwhile).
    """

    node_dir: Path
    secrets: NodeSecrets
    sidecar: Mapping[str, SidecarRow]
    default_patient: str | None
    policy: DeidPolicy
    known_sources: frozenset[str] = frozenset()
    known_patients: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)
    _uids: UidMapper | None = field(default=None, init=False, repr=False)
    _patients: dict[str, tuple[str, int]] = field(default_factory=dict, init=False, repr=False)

    @property
    def uids(self) -> UidMapper:
        """The node's deterministic UID mapping."""
        if self._uids is None:
            self._uids = UidMapper(self.secrets.uid_secret)
        return self._uids

    def patient(self, local_id: str) -> tuple[str, int]:
        """(pseudonym, date shift) of ``local_id``: the catalog's entry, else derived from the secret."""
        found = self._patients.get(local_id)
        if found is None:
            vault = Vault(self.secrets)
            row = self.known_patients.get(vault.lookup(local_id))
            if row is not None:  # created by this node before pseudonyms were derived: kept as it is
                entry = vault.unseal(*row)
                found = (entry.pseudonym, entry.date_shift_days)
            else:
                found = derive_pseudonym(self.secrets.lookup_secret, local_id)
            self._patients[local_id] = found
        return found



def process_file(task: FileTask, ctx: WorkContext) -> Outcome:
    """Ingest the file of ``task`` up to (not including) its catalog row; never raises for the file."""
    path = Path(task.path)
    try:
        with open_regular(path) as fh:
            identity = file_identity(fh)
            content = fh.readall()
    except NotRegularFileError as exc:
        return Unread(task.index, f"{exc.kind}, not a regular file: never read")
    except OSError as exc:
        return Unread(task.index, f"cannot read: {exc.strerror or type(exc).__name__}")
    source_sha = hashlib.sha256(content).hexdigest()
    caught: list[str] = []
    if source_sha in ctx.known_sources:
        return Known(task.index, source_sha)
    try:
        with _capture(caught):
            outcome = _ingest(task, path, content, source_sha, identity, ctx)
    except (NodeError, OSError) as exc:  # _ingest turned every problem of the file into an outcome
        return Broken(task.index, f"the node cannot store its work: {describe(exc)}")
    view = decoded_view(content, path) if caught else b""  # what a warning can quote: not only the bytes
    notes = tuple(dict.fromkeys(value_free(message, view) for message in caught))
    return replace(outcome, notes=notes) if notes else outcome


def _ingest(task: FileTask, path: Path, content: bytes, source_sha: str, identity: FileIdentity,
            ctx: WorkContext) -> Outcome:
    stage = "parsing"
    try:
        parsed = parse(path, content)
        stage = "finding the patient"
        side = sidecar_row(ctx.sidecar, path, task.name)
        local_id = parsed.local_patient_id or side.patient_id or ctx.default_patient
        if local_id is None:
            raise IngestError(NO_PATIENT)
        pseudonym, shift = ctx.patient(local_id)
        stage = "de-identifying"
        processed = deidentify(parsed, PatientContext(pseudonym, shift), ctx.uids, ctx.policy)
        if parsed.format != DICOM_FORMAT:
            # Raw files are validated and rebuilt from the path, not from the bytes hashed above:
            # a file written over meanwhile would be stored under another file's hash.
            _check_unchanged(path, identity)
    except IngestError as exc:
        # Our own reasons name no value; those of de-identification are checked like any text.
        reason = str(exc) if type(exc) is IngestError else value_free(str(exc), decoded_view(content, path))
        return _quarantine(task, path, content, source_sha, identity, reason, ctx)
    except Exception as exc:  # any failure while reading one file is that file's problem
        reason = f"unexpected error while {stage}: {describe(exc, decoded_view(content, path))}"
        return _quarantine(task, path, content, source_sha, identity, reason, ctx)
    record_id = hashlib.sha256(processed.content).hexdigest()
    _, rel = put(ctx.node_dir, processed.content, processed.suffix, digest=record_id)
    return Stored(
        task.index, source_sha, record_id, rel, len(processed.content), int(parsed.kind), parsed.modality[:16],
        parsed.format, parsed.synthetic, side.label, processed.study_uid, processed.series_uid, pseudonym,
        local_id, shift, tuple(processed.flags),
    )


def _check_unchanged(path: Path, identity: FileIdentity) -> None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        raise IngestError(f"the file went away while it was being ingested ({exc.strerror}); "
                          "ingest it again once it is in place") from exc
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != identity:
        raise IngestError("the file changed while it was being ingested (is it still being written?); "
                          "ingest it again once it is complete")


def _quarantine(task: FileTask, path: Path, content: bytes, source_sha: str, identity: FileIdentity, reason: str,
                ctx: WorkContext) -> Bad:
    rel = keep(ctx.node_dir, path, content, source_sha, reason)
    return Bad(task.index, source_sha, reason, rel, identity)


class _ListHandler(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"{record.name} logged: {record.getMessage()}")


@contextlib.contextmanager
def _capture(into: list[str]) -> Iterator[None]:
    """Collect the warnings and library log records raised inside instead of printing them."""
    handler = _ListHandler(into)
    loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
    saved = [(lg.handlers, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [handler], False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                into.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    finally:
        for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
            lg.handlers, lg.propagate = handlers, propagate
