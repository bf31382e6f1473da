"""Read compiled contract artifacts (ABI JSON files) from a directory, as plain files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import ArtifactError

#: The repository's committed artifacts, found next to this package (read as files, never imported).
DEFAULT_ARTIFACTS = Path(__file__).resolve().parent.parent / "contracts" / "artifacts"
#: The contracts the audit reads.
CONTRACTS = ("ConsortiumRoles", "ConsentRegistry", "DatasetRegistry", "StudyRegistry")


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: its name, ABI and the sha256 of its creation bytecode (hex)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode_sha256: str

    def event(self, name: str) -> dict[str, Any]:
        """Return the ABI entry of event ``name``.

        Raises:
            ArtifactError: the ABI has no such event.
        """
        for entry in self.abi:
            if entry.get("type") == "event" and entry.get("name") == name:
                return entry
        raise ArtifactError(f"the ABI of {self.name} has no event {name!r}; rebuild the artifacts")


def read_artifact(path: Path) -> Artifact:
    """Read one artifact file (``{"contractName", "abi", "bytecode", ...}``).

    Parameters:
        path: the JSON file, e.g. ``contracts/artifacts/ConsentRegistry.json``.

    Raises:
        ArtifactError: the file is missing or unreadable, not JSON, or lacks a list ``abi``
            or a hex ``bytecode``.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtifactError(f"cannot read contract artifact {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not JSON ({exc}); expected a compiled contract artifact") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} holds a JSON {type(data).__name__}, expected an object with 'abi' and 'bytecode'")
    abi, bytecode = data.get("abi"), data.get("bytecode")
    if not isinstance(abi, list):
        raise ArtifactError(f"{path} has no 'abi' list; expected a compiled contract artifact")
    try:
        code = bytes.fromhex(str(bytecode).removeprefix("0x"))
    except ValueError:
        raise ArtifactError(f"{path}: 'bytecode' is not hex ({str(bytecode)[:20]!r}...)") from None
    name = str(data.get("contractName") or Path(path).stem)
    return Artifact(name=name, abi=abi, bytecode_sha256=hashlib.sha256(code).hexdigest())


def read_artifacts(directory: Path = DEFAULT_ARTIFACTS, names: Iterable[str] = CONTRACTS) -> dict[str, Artifact]:
    """Read the artifacts ``<directory>/<name>.json`` of each contract in ``names``.

    Raises:
        ArtifactError: one of them is missing or malformed (the first one found).
    """
    return {name: read_artifact(Path(directory) / f"{name}.json") for name in names}


def artifact_named(artifacts: Mapping[str, Artifact], name: str) -> Artifact:
    """Return the artifact of contract ``name`` from ``artifacts``.

    Raises:
        ArtifactError: it was not read (pass it to :func:`read_artifacts`).
    """
    try:
        return artifacts[name]
    except KeyError:
        raise ArtifactError(f"no artifact of {name} was read (have {sorted(artifacts)})") from None
