"""The health report."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HealthPublic(BaseModel):
    """Whether the service can do its work: chain, database, relay, managed SuperLink."""

    status: str = Field(description="ok, or degraded when the chain or the database does not answer or "
                        "the managed SuperLink or its gateway does not run")
    chain_reachable: bool
    chain_id: int
    block: int | None = Field(description="The chain's latest block number, if reachable")
    database: str = Field(description="sqlite or postgresql")
    database_reachable: bool
    schema_revision: str | None
    outbox_depth: int | None = Field(description="Signed consents waiting to be relayed or mined")
    relay_running: bool = Field(description="The consent relay runs in the background (its own process by default)")
    relayer: str
    relayer_balance_wei: str | None
    superlink_running: bool | None = Field(
        default=None, description="The managed SuperLink and its Fleet gateway both run (null: this service does not "
                                  "run the SuperLink)")
    warmed_up: bool = Field(description="The chain index is read and the task catalogue loaded; until then the "
                                        "first requests that need them are slower")
