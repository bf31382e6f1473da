"""The node's ClientApp in each SuperNode's resident worker (node/federated/), across two studies.

Two identical studies (same hospitals, task, rounds and run config) run one after the other on
one federation. The model each starts from is the same (a task's ``build_model`` is
deterministic) and a node's training is seeded by the round, so every update of the second study
must equal the first's, byte for byte: whatever the worker kept from the first run (the opened
node, torch, the task code) must not change what it computes for the second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from contracts.studies import StudyStatus
from deploy.process import read_log
from tests.federated.conftest import STUDY_CONFIG, FlowerRun, running_study

_HANDLED = re.compile(
    r"ClientApp worker (\d+): message \d+ \(run (\d+)\) (\w+) in [\d.]+ s \([^)]*\); first imported: (.*)")


@dataclass(frozen=True)
class Handled:
    pid: int
    run_id: int
    status: str
    first_imported: list[str]


@dataclass(frozen=True)
class TwoStudies:
    studies: tuple[int, int]
    run_ids: tuple[int, int]
    handled: list[list[Handled]]  # per hospital, in the order of the hospitals fixture


@pytest.fixture(scope="module")
def two_studies(module_exchange, actors, hospitals, module_federation: FlowerRun) -> TwoStudies:  # type: ignore[no-untyped-def]
    studies, run_ids = [], []
    for _ in range(2):
        study = running_study(module_exchange, actors, hospitals, rounds=2)
        result = module_federation({**STUDY_CONFIG, "study-id": study})
        assert result.status == "finished:completed", result.logs[-3000:]
        assert module_exchange.studies.study(study).status == StudyStatus.COMPLETED
        studies.append(study)
        run_ids.append(result.run_id)
    handled = [[Handled(int(m[1]), int(m[2]), m[3], [p for p in m[4].split(", ") if p != "nothing"])
                for m in _HANDLED.finditer(read_log(node.log_file))] for node in module_federation.supernodes]
    return TwoStudies((studies[0], studies[1]), (run_ids[0], run_ids[1]), handled)


@pytest.mark.slow
def test_one_worker_per_node_handles_every_round_of_both_studies(two_studies: TwoStudies) -> None:
    for handled in two_studies.handled:
        assert [(h.run_id, h.status) for h in handled] == [(run_id, "completed") for run_id in two_studies.run_ids
                                                           for _ in (1, 2)]
        assert len({h.pid for h in handled}) == 1


@pytest.mark.slow
def test_torch_and_the_task_are_imported_by_the_first_message_only(two_studies: TwoStudies) -> None:
    for handled in two_studies.handled:
        assert {"torch", "tasks", "node"} <= set(handled[0].first_imported)
        assert all("torch" not in h.first_imported and "tasks" not in h.first_imported for h in handled[1:])


@pytest.mark.slow
def test_the_second_study_gets_the_same_updates_as_the_first(two_studies: TwoStudies, module_exchange,  # type: ignore[no-untyped-def]
                                                            hospitals) -> None:
    first, second = two_studies.studies
    studies = module_exchange.studies
    for round_ in (1, 2):
        for h in hospitals:
            a, b = studies.contribution_of(first, round_, h.node.address), studies.contribution_of(second, round_,
                                                                                                  h.node.address)
            assert a is not None
            assert b is not None
            assert a.update_hash == b.update_hash, (round_, h.node.address)
        assert studies.round_model_hash(first, round_) == studies.round_model_hash(second, round_)
