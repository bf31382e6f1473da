"""A study's lineage bundle as an auditor reads it (docs/formats/lineage-bundle.md).

The bundle is a directory whose ``bundle.json`` lists the SHA-256 of every other file; the
keccak256 of ``bundle.json``'s exact bytes is the lineage hash the chain anchors at completion.
:func:`open_bundle` reads the index and checks every listed file against its hash, naming any
file missing, altered or not listed; the readers below then only return files that passed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils.crypto import keccak

from audit.hashing import sha256_file
from audit.report import Report

__all__ = ["Bundle", "canonical_json", "open_bundle"]

INDEX = "bundle.json"
FORMAT = "metai-lineage/1"
_NUMBER = re.compile(r"(\d+)$")
_HELD = re.compile(r"rounds/(\d+)/cohorts/(0x[0-9a-fA-F]{40})\.json")


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: keys sorted, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Bundle:
    """An opened bundle: its directory, index, lineage hash and the files that match their listed hash."""

    root: Path
    index: dict[str, Any]
    lineage_hash: bytes
    good: set[str] = field(default_factory=set)

    def has(self, name: str) -> bool:
        """Whether ``name`` is listed and its bytes match the index."""
        return name in self.good

    def json(self, name: str) -> Any:
        """The parsed JSON file ``name`` (checked against the index)."""
        return json.loads(self._bytes(name))

    def arrays(self, name: str) -> list[np.ndarray]:
        """The arrays of the ``.npz`` file ``name``, in model order (by each key's trailing number)."""
        path = self.root / name
        self._bytes(name)
        with np.load(path, allow_pickle=False) as archive:
            keys = sorted(archive.files, key=lambda k: int(m.group(1)) if (m := _NUMBER.search(k)) else -1)
            return [archive[k] for k in keys]

    def _bytes(self, name: str) -> bytes:
        if name not in self.good:
            raise KeyError(f"{name} is not a verified file of the bundle")
        return (self.root / name).read_bytes()


def open_bundle(root: Path, report: Report) -> Bundle | None:
    """Read ``root``'s index and check every file against it, recording each mismatch in ``report``.

    Returns None (with a finding) when there is no readable index at all.
    """
    index_path = root / INDEX
    try:
        raw = index_path.read_bytes()
        index = json.loads(raw)
    except FileNotFoundError:
        report.fail("bundle.index", str(root), f"no {INDEX}: not a lineage bundle")
        return None
    except (OSError, ValueError) as exc:
        report.fail("bundle.index", str(index_path), f"unreadable: {exc}")
        return None
    bundle = Bundle(root, index, keccak(raw))
    report.check("bundle.format", index.get("format") == FORMAT, INDEX,
                 f"format {index.get('format')!r}, expected {FORMAT!r}")
    report.check("bundle.canonical", canonical_json(index) == raw, INDEX,
                 "not canonical JSON (sorted keys, no whitespace): its hash would not be reproducible")
    listed = index.get("files") if isinstance(index.get("files"), dict) else {}
    for name, digest in sorted(listed.items()):
        path = root / name
        if not _inside(root, path) or name == INDEX:
            report.fail("bundle.file", name, "a listed path outside the bundle, or the index itself")
            continue
        if not path.is_file():
            held = _HELD.fullmatch(name)
            report.fail("bundle.file", name, "listed in the index but missing" + (
                f"; a cohort manifest that a hospital in sealed mode holds (the coordinator never had it): get it "
                f"from hospital {held.group(2)}, `metai-node cohort-manifest --study {index.get('study_id')} --round "
                f"{held.group(1)} --out <this path>`, and audit again" if held else ""))
            continue
        found = sha256_file(path.read_bytes())
        if report.check("bundle.file", found == digest, name, f"sha256 {found}, the index lists {digest}"):
            bundle.good.add(name)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name != INDEX and name not in listed:
            report.fail("bundle.file", name, "a file of the bundle that the index does not list")
    return bundle


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
