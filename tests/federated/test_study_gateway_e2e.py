"""A study round through the coordinator's Fleet gateway, as a deployment across hosts runs it.

The coordinator service runs its own SuperLink (METAI_COORDINATOR_SUPERLINK=managed) behind the
gateway. Each hospital makes its SuperNode key on its own node (``federation_key``), the operator
registers the public line through the service's route, and the hospital's SuperNode reaches the
SuperLink only through the gateway, over TLS verified against the consortium CA. The operator
starts the study through the service; its round's model updates travel through the gateway both
ways, and the chain records the round.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from contracts.studies import StudyStatus
from deploy.process import stop_tree
from deploy.signers import SignerProcess, stop_signer
from tests.coordinator.managed_service import ManagedService, Node, connect_hospital
from tests.federated.conftest import STUDY_CONFIG, running_study

WAIT = 600.0


@pytest.mark.slow
def test_a_study_round_goes_through_the_fleet_gateway(tmp_path: Path, exchange, actors,  # type: ignore[no-untyped-def]
                                                      hospitals, node_specs) -> None:
    study_id = running_study(exchange, actors, hospitals, rounds=1, start=False)
    service = ManagedService(tmp_path / "coordinator", exchange, actors)
    service.start()
    signers: list[SignerProcess] = []
    nodes: list[Node] = []
    try:
        operator = service.sign_in(actors.coordinator)
        for spec in node_specs:
            signer, node = connect_hospital(service, operator, spec, tmp_path)
            signers.append(signer)
            nodes.append(node)

        run_config = {key: value for key, value in STUDY_CONFIG.items() if key != "task"}
        launched = httpx.post(f"{service.url}/v1/studies/{study_id}/start", headers=operator,
                              json={"run_config": run_config}, timeout=120)
        assert launched.status_code == 202, launched.text
        deadline = time.monotonic() + WAIT
        while (run := httpx.get(f"{service.url}/v1/studies/{study_id}/run", headers=operator).json())["state"] \
                == "running":
            assert time.monotonic() < deadline, f"the run did not end within {WAIT} s: {run}"
            time.sleep(2.0)
    finally:
        for node in nodes:
            stop_tree(node.proc.pid, (), 10)
        for signer in signers:
            stop_signer(signer)
        service.stop()

    assert (run["state"], run["status"]) == ("finished", "finished:completed"), run
    record = exchange.studies.study(study_id)
    assert (record.status, record.rounds_completed) == (StudyStatus.COMPLETED, 1)
    for h in hospitals:
        assert exchange.studies.contribution_of(study_id, 1, h.node.address).cohort_count == 12
