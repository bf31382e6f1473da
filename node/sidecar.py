"""CSV sidecars: a label and a local patient id for files that do not carry them."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from node.errors import IngestError


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


def sidecar_row(sidecar: Mapping[str, SidecarRow], path: Path, name: str) -> SidecarRow:
    """The row of ``sidecar`` about the file at ``path`` (``name`` relative to its ingest root)."""
    side = sidecar.get(name) or sidecar.get(path.name)
    if side is None and isinstance(sidecar, Sidecar):
        side = sidecar.get(sidecar.relative_name(path))
    return side or SidecarRow(None, None)
