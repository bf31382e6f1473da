"""Chain steps many tests take the way a hospital node does, without a node.

A contribution names the hospital's registered datasets its cohort draws from and the block its
consents were read at (``StudyRegistry.contribute``). Tests that only need *a* valid contribution
use :func:`contribute`: the cohort as of the latest mined block, from the hospital's own test
dataset, registered on first use.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from contracts.chain import TxResult
from contracts.datause import Kind
from contracts.exchange import Exchange


def hospital_dataset(exchange: Exchange, hospital: LocalAccount) -> int:
    """The id of ``hospital``'s test dataset on ``exchange``, registered now if it is not yet."""
    root = keccak(text=f"test dataset of {hospital.address}")
    found = exchange.datasets.id_of(root)
    if found:
        return found
    dataset_id, _ = exchange.datasets.register(
        hospital, root, 1_000, Kind.IMAGE | Kind.CT_SINOGRAM | Kind.MR_KSPACE, "CT", synthetic=True)
    return dataset_id


def contribute(exchange: Exchange, hospital: LocalAccount, study_id: int, round_: int, cohort_root: bytes,
               cohort_count: int, update_hash: bytes, *, dataset_ids: tuple[int, ...] | None = None) -> TxResult:
    """Contribute to ``round_`` with a cohort read at the latest mined block, from ``hospital``'s test dataset."""
    datasets = dataset_ids if dataset_ids is not None else (hospital_dataset(exchange, hospital),)
    block = exchange.chain.block_number
    return exchange.studies.contribute(hospital, study_id, round_, cohort_root, cohort_count, block, datasets,
                                       update_hash)
