"""The catalogue researchers choose hospitals and data from."""

from __future__ import annotations

from pydantic import BaseModel, Field

from coordinator.models.common import Address, Hash32
from coordinator.models.consents import KindName


class DatasetPublic(BaseModel):
    """A dataset a hospital registered on chain (a Merkle root over its records' leaves)."""

    dataset_id: int
    kinds: list[KindName]
    modality: str
    records: int
    synthetic: bool
    merkle_root: Hash32
    derived_from: list[int] = Field(description="Parent datasets, for data derived from others")
    block: int


class HospitalPublic(BaseModel):
    """A hospital of the consortium, with the datasets it registered."""

    address: Address
    since_block: int = Field(description="Block the HOSPITAL role was granted in")
    datasets: list[DatasetPublic]
    records: int = Field(description="Records in all its registered datasets")
