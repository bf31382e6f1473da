"""A node's round trains on every consented record each epoch, the last partial batch included.

The hospital's cohort holds 12 records (the federated fixtures' consenting patients); with batch size 5 an epoch is
batches of 5, 5 and 2. The batches are counted by a global forward hook on the task's model class, independently of
the training code, and the round's reported example count is checked against the cohort's on-chain count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from node.training import train_local
from tests.federated.conftest import TASK

COHORT = 12  # records of the task's kind whose patients consent, in the federated fixtures
BATCH = 5
EPOCHS = 2


def test_node_round_trains_every_record_each_epoch_including_the_partial_batch(hospitals, study, exchange) -> None:  # type: ignore[no-untyped-def]
    from tasks import get_task, get_weights

    task = get_task(TASK)
    model_class = type(task.build_model())
    sizes: list[int] = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if type(module) is model_class and module.training:
            sizes.append(int(args[0].shape[0]))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        trained = train_local(
            hospitals[0].node,
            study_id=study,
            round_=1,
            task_code=TASK,
            weights=get_weights(task.build_model()),
            epochs=EPOCHS,
            lr=1e-3,
            batch_size=BATCH,
            proximal_mu=0.0,
        )
    finally:
        handle.remove()
    assert trained.cohort.count == COHORT
    assert sizes == [5, 5, 2] * EPOCHS
    assert trained.metrics["examples"] == COHORT
