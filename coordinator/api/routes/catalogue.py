"""The catalogue: the consortium's hospitals and the datasets each registered, from the chain's events."""

from __future__ import annotations

from fastapi import APIRouter

from coordinator.api.deps import IndexDep, SignedInDep
from coordinator.api.problems import PROBLEM_RESPONSES
from coordinator.models.catalogue import DatasetPublic, HospitalPublic
from coordinator.models.consents import kind_names

router = APIRouter(tags=["catalogue"], responses=PROBLEM_RESPONSES)


@router.get("/catalogue")
async def catalogue(_account: SignedInDep, index: IndexDep) -> list[HospitalPublic]:
    """Every hospital holding the HOSPITAL role now, with each dataset it registered: kinds, modality, count,
    whether synthetic. Datasets of accounts that lost the role are left out."""
    by_hospital: dict[str, list[DatasetPublic]] = {}
    for event in index.datasets():
        by_hospital.setdefault(event.hospital, []).append(DatasetPublic(
            dataset_id=event.dataset_id, kinds=kind_names(int(event.kinds)), modality=event.modality,
            records=event.record_count, synthetic=event.synthetic, merkle_root="0x" + event.merkle_root.hex(),
            derived_from=list(event.parents), block=event.block_number))
    return [HospitalPublic(address=address, since_block=block, datasets=by_hospital.get(address, []),
                           records=sum(d.records for d in by_hospital.get(address, [])))
            for address, block in sorted(index.hospitals().items(), key=lambda kv: kv[1])]
