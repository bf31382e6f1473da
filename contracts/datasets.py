"""Typed client of ``DatasetRegistry``: anchor datasets as Merkle roots, check record proofs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from contracts.base import BlockId, ContractClient
from contracts.chain import TxResult
from contracts.datause import Kind
from contracts.events import DatasetRegistered
from contracts.mirrors import build, function_outputs


@dataclass(frozen=True)
class DatasetRecord:
    """A registered dataset as stored on chain."""

    dataset_id: int
    merkle_root: bytes
    hospital: str
    record_count: int
    kinds: Kind
    synthetic: bool
    modality: str
    registered_at_block: int
    provenance_hash: bytes


def modality_code(modality: str) -> bytes:
    """Encode a DICOM modality code (e.g. ``"CT"``) as the contract's left-aligned bytes16.

    Raises:
        ValueError: empty, not ASCII, or longer than 16 characters.
    """
    raw = modality.encode("ascii", errors="strict") if modality.isascii() else b""
    if not raw or len(raw) > 16:
        raise ValueError(f"modality {modality!r} must be 1 to 16 ASCII characters, e.g. 'CT'")
    return raw.ljust(16, b"\0")


class DatasetClient(ContractClient):
    """The registry of datasets and their provenance."""

    artifact = "DatasetRegistry"

    def register(
        self,
        hospital: LocalAccount,
        merkle_root: bytes,
        record_count: int,
        kinds: Kind,
        modality: str,
        *,
        synthetic: bool,
        parents: Sequence[int] = (),
        transform_hash: bytes = bytes(32),
    ) -> tuple[int, TxResult]:
        """Register a dataset of ``hospital``; return its id and the transaction."""
        result = self._send(
            hospital,
            "register",
            merkle_root,
            record_count,
            int(kinds),
            modality_code(modality),
            synthetic,
            list(parents),
            transform_hash,
        )
        return result.event(DatasetRegistered).dataset_id, result

    def dataset(self, dataset_id: int, *, block: BlockId = "latest") -> DatasetRecord:
        """The dataset ``dataset_id``; raises the contract's UnknownDataset error if absent."""
        fields = self._call("dataset", dataset_id, block=block)
        return build(DatasetRecord, function_outputs(self.artifact, "dataset"), fields, dataset_id=dataset_id)

    def count(self) -> int:
        """How many datasets are registered."""
        return int(self._call("datasetCount"))

    def id_of(self, merkle_root: bytes) -> int:
        """The id ``merkle_root`` is registered under, by whichever hospital (0 if none)."""
        return int(self._call("datasetIdOf", merkle_root))

    def hospital_of(self, dataset_id: int, *, block: BlockId = "latest") -> str:
        """The hospital that registered ``dataset_id`` (the zero address if none did)."""
        return str(self._call("hospitalOf", dataset_id, block=block))

    def contains_record(self, dataset_id: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
        """Whether the chain accepts ``proof`` that ``leaf`` is a record of ``dataset_id``."""
        return bool(self._call("containsRecord", dataset_id, leaf, list(proof)))
