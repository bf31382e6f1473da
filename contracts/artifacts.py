"""Load the committed contract artifacts (ABI and creation bytecode)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from contracts.errors import ArtifactError

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
#: Deployable contracts, in deployment order.
CONTRACT_NAMES = ("ConsortiumRoles", "ConsentRegistry", "DatasetRegistry", "StudyRegistry")


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its name, ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str

    @property
    def bytecode_sha256(self) -> str:
        """The sha256 of the creation bytecode, recorded in deployment manifests."""
        return hashlib.sha256(bytes.fromhex(self.bytecode.removeprefix("0x"))).hexdigest()


@cache
def load_artifact(name: str) -> Artifact:
    """Read the artifact of contract ``name`` from ``contracts/artifacts``.

    Raises:
        ArtifactError: the file is missing or is not an artifact (run ``python -m contracts.build``).
    """
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])
    except FileNotFoundError as exc:
        raise ArtifactError(f"no artifact for {name} at {path}; run python -m contracts.build") from exc
    except (json.JSONDecodeError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a contract artifact ({exc}); rebuild it") from exc
