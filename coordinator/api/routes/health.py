"""The health report: chain, database, relay, managed SuperLink."""

from __future__ import annotations

from fastapi import APIRouter, Response

from contracts.errors import ChainError
from coordinator.api.deps import ServicesDep
from coordinator.api.problems import PROBLEM_RESPONSES
from coordinator.core.db import current_revision
from coordinator.models.health import HealthPublic
from coordinator.relay.outbox import depth

router = APIRouter(tags=["health"], responses=PROBLEM_RESPONSES)


@router.get("/health")
def health(services: ServicesDep, response: Response) -> HealthPublic:
    """Whether the chain and the database answer, the chain's height, the relay's backlog, and whether the managed
    SuperLink runs (503 if degraded)."""
    chain = services.exchange.chain
    try:
        block: int | None = chain.block_number
        balance: str | None = str(chain.balance(services.relayer.address))
    except ChainError:
        block, balance = None, None
    db_ok = services.db.reachable()
    revision = outbox = None
    if db_ok:
        revision = current_revision(services.db.engine)
        with services.db.reading() as db:
            outbox = depth(db)
    superlink = services.superlink_running()
    ok = block is not None and db_ok and superlink is not False
    if not ok:
        response.status_code = 503
    return HealthPublic(status="ok" if ok else "degraded", chain_reachable=block is not None, chain_id=chain.chain_id,
                        block=block, database=services.db.backend, database_reachable=db_ok,
                        schema_revision=revision, outbox_depth=outbox,
                        relay_running=services.relay_running(), relayer=services.relayer.address,
                        relayer_balance_wei=balance, superlink_running=superlink,
                        warmed_up=services.warmed_up.is_set())
