"""A node's round without Flower: refusals say why, and a contribution is anchored as trained."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from contracts.datause import Kind, Purpose
from contracts.studies import StudyRequest
from node.kept_cohort import read_kept_cohort
from node.training import StudyRefused, train_round
from tests.federated.conftest import TASK


def initial_weights():  # type: ignore[no-untyped-def]
    from tasks import get_task, get_weights

    return get_weights(get_task(TASK).build_model())


def run_round(node, study_id: int, round_: int = 1):  # type: ignore[no-untyped-def]
    return train_round(node, study_id=study_id, round_=round_, task_code=TASK, weights=initial_weights(),
                       epochs=1, lr=1e-3, batch_size=8, proximal_mu=0.0)


def test_round_anchors_the_cohort_it_trained_on(hospitals, study, exchange) -> None:
    from tasks import weights_hash

    node = hospitals[0].node
    result = run_round(node, study)
    on_chain = exchange.studies.contribution_of(study, 1, node.address)
    assert (on_chain.cohort_root, on_chain.cohort_count) == (result.cohort.root, 12)
    assert result.update_hash == weights_hash(result.weights)
    kept = read_kept_cohort(node.dir, study, 1)
    assert kept.root == "0x" + result.cohort.root.hex()


def test_node_that_did_not_approve_trains_on_nothing(hospitals, exchange, actors) -> None:
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.node.address for h in hospitals),
        task_code_hash=task_code_hash(TASK), rounds=1))
    exchange.studies.approve(hospitals[0].node.account, study_id)
    with pytest.raises(StudyRefused, match="REQUESTED, not RUNNING"):
        run_round(hospitals[1].node, study_id)
    exchange.studies.approve(hospitals[1].node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    outsider_study, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(hospitals[0].node.address,),
        task_code_hash=task_code_hash(TASK), rounds=1))
    exchange.studies.approve(hospitals[0].node.account, outsider_study)
    exchange.studies.start(actors.coordinator, outsider_study)
    with pytest.raises(StudyRefused, match=r"has not approved study \d+ \(decision NONE\)"):
        run_round(hospitals[1].node, outsider_study)
    assert exchange.studies.contribution_of(outsider_study, 1, hospitals[1].node.address) is None


def test_tampered_task_code_hash_is_refused(hospitals, exchange, actors) -> None:
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(hospitals[0].node.address,),
        task_code_hash=keccak(b"some other code"), rounds=1))
    exchange.studies.approve(hospitals[0].node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    with pytest.raises(StudyRefused, match="refusing to run code the committee did not approve"):
        run_round(hospitals[0].node, study_id)
    assert exchange.studies.contribution_of(study_id, 1, hospitals[0].node.address) is None
