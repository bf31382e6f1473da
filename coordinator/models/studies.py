"""Study requests and views: what a researcher asks for, follows and downloads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from coordinator.models.common import Address, Hash32, Uint53
from coordinator.models.consents import KindName


class StudyCreate(BaseModel):
    """A study a researcher wants to request (they sign and send the transaction themselves)."""

    purpose: Literal["GRU", "HMB", "DS"]
    disease: int = Field(default=0, ge=0, le=2**32 - 1)
    kinds: list[KindName] = Field(min_length=1)
    hospitals: list[Address] = Field(min_length=1, max_length=64)
    task: str = Field(description="A training task the exchange knows (GET /v1/tasks)")
    rounds: int = Field(ge=1, le=1000)
    privacy_budget: float = Field(default=0.0, ge=0.0, le=1000.0,
                                  description="Total epsilon the study may spend (0: no differential privacy)")

    @model_validator(mode="after")
    def _disease(self) -> StudyCreate:
        if (self.purpose == "DS") != (self.disease != 0):
            raise ValueError("a disease code goes with purpose DS, and only with it")
        if len(set(self.hospitals)) != len(self.hospitals):
            raise ValueError("a hospital is named twice")
        return self


class PreparedTransaction(BaseModel):
    """An unsigned transaction for the caller's own wallet to sign and send (eth_sendTransaction)."""

    chain_id: int
    sender: Address = Field(description="The account that must send it")
    to: Address
    data: str
    summary: str


class TaskPublic(BaseModel):
    """A training task and the code hash a study names it by."""

    code: str
    code_hash: Hash32
    description: str


class DecisionPublic(BaseModel):
    """One named hospital's decision."""

    hospital: Address
    decision: Literal["pending", "approved", "declined"]


class ContributionPublic(BaseModel):
    """One hospital's anchored commitment for a round."""

    hospital: Address
    cohort_root: Hash32
    cohort_count: int
    update_hash: Hash32
    block: int
    tx_hash: Hash32


class RoundPublic(BaseModel):
    """A round: its contributions, its aggregated model and, once known, its evaluation."""

    round: int
    contributions: list[ContributionPublic]
    model_hash: Hash32 | None
    block: int | None
    tx_hash: Hash32 | None
    privacy_spent_milli_epsilon: int | None
    metrics: dict[str, float] | None = Field(description="Held-out evaluation of the round's model (coordinator's log)")


class StudyPublic(BaseModel):
    """A study as the chain and the coordinator's log record it."""

    study_id: int
    status: Literal["requested", "declined", "running", "completed"]
    researcher: Address
    purpose: str
    disease: int
    purpose_words: str
    kinds: list[KindName]
    task: str | None = Field(description="The task whose code hash the study names, if this service knows it")
    task_code_hash: Hash32
    rounds: int
    rounds_completed: int
    privacy_budget_epsilon: float
    privacy_spent_epsilon: float
    decisions: list[DecisionPublic]
    requested_at_block: int
    started_at_block: int | None
    round_records: list[RoundPublic]
    final_model_hash: Hash32 | None
    lineage_hash: Hash32 | None = Field(default=None, description=(
        "keccak256 of the study's lineage bundle index (bundle.json), anchored at completion"))
    completed_tx: Hash32 | None


class StudySummary(BaseModel):
    """A study in a list."""

    study_id: int
    status: str
    researcher: Address
    purpose_words: str
    rounds: int
    rounds_completed: int
    my_part: list[str] = Field(description="Why I see it: researcher, named hospital, coordinator, admin")


class StudyRequestAccepted(BaseModel):
    """Where to follow a study just prepared."""

    prepared: PreparedTransaction
    request: StudyCreate
    task_code_hash: Hash32
    privacy_budget_milli_epsilon: Uint53


class StudyStart(BaseModel):
    """What the coordinator operator may add when starting a study's run."""

    run_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Overrides of the app's [tool.flwr.app.config], each typed like its default "
                    "(study-id and task come from the study)")


class StudyRunPublic(BaseModel):
    """The latest launch of a study's Flower run by this service."""

    study_id: int
    state: Literal["launching", "running", "finished", "failed"] = Field(
        description="launching: being submitted; running: the SuperLink runs it; finished: Flower reports it "
                    "ended, or the chain that the study completed while the service was stopped (status says how); "
                    "failed: the launch failed (error says why)")
    run_id: str | None = Field(description="Flower's run id, in decimal (it may exceed 2^53)")
    status: str | None = Field(description="Flower's status once the run ended, e.g. finished:completed")
    error: str | None = Field(description="Why the launch failed or the run did not complete, with its log tail")
    started_at: datetime
    ended_at: datetime | None
    resumed_from_run_id: str | None = Field(
        default=None, description="The run this launch's run replaced when the service, restarted, resumed the "
                                  "study (its run had not survived the restart)")
    resumed_at: datetime | None = Field(default=None, description="When the service resumed the study")
