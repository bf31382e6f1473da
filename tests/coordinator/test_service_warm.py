"""Warming up at start: the chain index and the task catalogue are ready before requests need them."""

from __future__ import annotations

import gc
from collections.abc import Callable

from tests.coordinator.conftest import Harness


def test_warming_up_reads_the_chain_loads_the_tasks_and_freezes_what_exists(
        service_factory: Callable[..., Harness]) -> None:
    harness = service_factory(chain_lag=0.5)
    services = harness.services
    assert not services.index.ever_synced()
    assert not services.tasks_known()
    try:
        assert harness.client.get("/v1/health").json()["warmed_up"] is False
        services.warm_up()
        assert harness.client.get("/v1/health").json()["warmed_up"] is True
        assert services.index.ever_synced()
        assert services.tasks_known()
        assert services.index.block == services.exchange.chain.block_number
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process is no service: give its objects back to the collector
