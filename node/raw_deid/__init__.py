"""De-identification of raw data (CT sinograms, ISMRMRD k-space) by allow-list.

A stored raw file is a new file built from the fields the allow-lists name, each checked by its
kind (numbers, enumerations, UIDs mapped like DICOM, dates shifted like DICOM, the pseudonym);
nothing else of the source is copied, and nothing is written to disk on the way. The lists are
data (``SINOGRAM_RULES``, ``HEADER_RULES``, ``FILE_RULES``, ``ACQUISITION_RULES``,
``PROVENANCE_RULES``) and are printed as the tables of ``docs/deidentification-raw.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.raw_deid.ismrmrd_file import ACQUISITION_RULES, FILE_RULES, rebuild_ismrmrd
from node.raw_deid.ismrmrd_header import HEADER_RULES
from node.raw_deid.provenance import DEIDENTIFICATION_NOTE, PROVENANCE_RULES
from node.raw_deid.rules import FieldRule, RuleSet, markdown_table
from node.raw_deid.sinogram import SINOGRAM_RULES, rebuild_sinogram
from raw_data.formats import ISMRMRD_FORMAT, SINOGRAM_FORMAT

__all__ = [
    "ACQUISITION_RULES",
    "DEIDENTIFICATION_NOTE",
    "FILE_RULES",
    "HEADER_RULES",
    "PROVENANCE_RULES",
    "SINOGRAM_RULES",
    "FieldRule",
    "RawResult",
    "RuleSet",
    "deidentify_raw",
    "markdown_table",
]



@dataclass(frozen=True)
class RawResult:
    """A rebuilt raw file: its bytes, its mapped study UID (ISMRMRD), and notes for the ingest report."""

    content: bytes
    study_uid: str | None
    flags: tuple[str, ...]


def deidentify_raw(fmt: str, source: Path, patient: PatientContext, uids: UidMapper) -> RawResult:
    """Rebuild the raw file ``source`` of format ``fmt`` from its allow-list, in memory.

    Parameters:
        fmt: ``"metai-ct-sinogram"`` or ``"ismrmrd"`` (as ``node.formats.parse`` recognised it).
        source: the source file, opened read-only and never modified.
        patient: the pseudonym and date offset of the patient the file belongs to.
        uids: the node's UID mapper (the one DICOM de-identification uses).

    Returns:
        The bytes to store and what the report should say.

    Raises:
        DeidentificationError: the format is unknown, or the file cannot be rebuilt safely.
    """
    if fmt == SINOGRAM_FORMAT:
        content, flags = rebuild_sinogram(source, patient, uids)
        return RawResult(content, None, flags)
    if fmt == ISMRMRD_FORMAT:
        content, study_uid, flags = rebuild_ismrmrd(source, patient, uids)
        return RawResult(content, study_uid, flags)
    raise DeidentificationError(
        f"no raw de-identification for format {fmt!r}; expected {SINOGRAM_FORMAT!r} or {ISMRMRD_FORMAT!r}")
