"""The catalogue: hospitals and their registered datasets, as the chain's events record them."""

from __future__ import annotations

from eth_utils.crypto import keccak

from contracts.datause import Kind
from contracts.roles import Role
from tests.conftest import Actors
from tests.coordinator.conftest import Harness


def test_the_catalogue_lists_each_hospital_with_the_datasets_it_registered(service: Harness, actors: Actors) -> None:
    datasets = service.exchange.datasets
    sinograms, _ = datasets.register(actors.hospital, keccak(text="a"), 40, Kind.CT_SINOGRAM, "CT", synthetic=True)
    images, _ = datasets.register(actors.hospital, keccak(text="b"), 40, Kind.IMAGE, "CT", synthetic=True,
                                  parents=[sinograms], transform_hash=keccak(text="fbp"))
    mr, _ = datasets.register(actors.hospital2, keccak(text="c"), 12, Kind.MR_KSPACE, "MR", synthetic=False)
    listed = {h["address"]: h for h in service.client.get(
        "/v1/catalogue", headers=service.bearer(actors.researcher)).json()}
    first = listed[actors.hospital.address]
    assert [(d["dataset_id"], d["kinds"], d["derived_from"]) for d in first["datasets"]] == [
        (sinograms, ["ct-sinogram"], []), (images, ["image"], [sinograms])]
    assert first["records"] == 80
    (second,) = listed[actors.hospital2.address]["datasets"]
    assert (second["dataset_id"], second["modality"], second["synthetic"], second["records"]) == (mr, "MR", False, 12)
    assert listed[actors.outsider_hospital.address]["datasets"] == []


def test_an_account_that_lost_the_hospital_role_leaves_the_catalogue(service: Harness, actors: Actors) -> None:
    service.exchange.roles.revoke(actors.admin, Role.HOSPITAL, actors.hospital2.address)
    listed = service.client.get("/v1/catalogue", headers=service.bearer(actors.researcher)).json()
    assert actors.hospital2.address not in {h["address"] for h in listed}
    assert actors.hospital.address in {h["address"] for h in listed}
