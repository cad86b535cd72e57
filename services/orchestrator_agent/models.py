"""Payloads and results of the orchestrator agent's skills.

DECOMPOSE_TASK, ROUTE_REQUEST, AGGREGATE_RESULTS and GET_STATUS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.orchestrator_agent.catalogue import STEP_ID_PATTERN
from shared.bus import ResponseStatus

PlanSource = Literal["llm", "rules"]


class DecomposeTaskPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=20_000, description="the task, in words")
    kind: str | None = Field(None, description="a catalogue kind; default: inferred from the description")
    context: dict[str, Any] = Field(
        default_factory=dict, description="repo, base_ref, head_ref, environment, ... copied into payloads"
    )
    use_llm: bool = Field(True, description="let a configured LLM plan; False forces the rule-based plan")

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class PlanStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN)
    title: str = Field(min_length=1, max_length=500)
    capability: str = Field(min_length=1)
    request_type: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    bindings: dict[str, str] = Field(
        default_factory=dict,
        description="payload field -> '<step>.<result field>' of an earlier step, filled in at dispatch",
    )


class PlanDraft(BaseModel):
    """What a model is asked to return: steps in any order, dependencies by id."""

    model_config = ConfigDict(extra="forbid")

    steps: list[PlanStep] = Field(min_length=1, max_length=50)


class DecomposeResult(BaseModel):
    kind: str | None = Field(description="the catalogue kind the plan follows; None for a free-form LLM plan")
    source: PlanSource
    steps: list[PlanStep] = Field(description="in topological order: every step after its dependencies")
    order: list[str]
    stages: list[list[str]] = Field(description="groups of step ids that can run in parallel, in order")
    notes: list[str] = Field(default_factory=list)


class RouteRequestPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capabilities: list[str] = Field(default_factory=list, max_length=50)
    request_type: str | None = Field(None, description="mapped to its capability through the catalogue")
    match: Literal["all", "any"] = "all"

    @model_validator(mode="after")
    def _something_to_route(self) -> Self:
        if not self.capabilities and not self.request_type:
            raise ValueError("give `capabilities` or `request_type`")
        return self


class RouteResult(BaseModel):
    agent_id: str
    agent_name: str
    base_url: str
    capabilities: list[str] = Field(description="what the chosen agent offers")
    requested: list[str] = Field(description="the capabilities the route was chosen for")
    status: str
    active_requests: int
    capacity: int


class AgentOutcome(BaseModel):
    """One agent's answer; accepts an AgentResponseEvent as sent on the bus."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    agent: str = Field(min_length=1, validation_alias=AliasChoices("agent", "source_agent", "agent_id"))
    status: ResponseStatus
    request_type: str | None = None
    step: str | None = Field(None, description="the plan step this answers, if any")
    result: dict[str, Any] | None = None
    error: str | None = None
    processing_time_ms: float = Field(0.0, ge=0)


class AggregateResultsPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[AgentOutcome] = Field(min_length=1, max_length=1000)
    title: str = Field("Results", max_length=200)


class OutcomeSummary(BaseModel):
    agent: str
    step: str | None
    request_type: str | None
    status: ResponseStatus
    summary: str


class AggregateResult(BaseModel):
    status: ResponseStatus = Field(description="success only when every item succeeded")
    counts: dict[str, int]
    items: list[OutcomeSummary] = Field(description="failed items first, then the rest, each in input order")
    report: str = Field(description="the same as Markdown")
    total_processing_time_ms: float


class GetStatusPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = Field(
        None,
        # The registry's own rule for agent ids: anything else names no agent (a 422 here).
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        description="another agent to ask the registry about; default: this one",
    )


class AgentStatusView(BaseModel):
    agent_id: str
    status: str
    source: Literal["self", "registry"]
    llm: str = Field("none", description="the configured LLM spec, or none")
    task_kinds: list[str] = Field(default_factory=list)
    requests_handled: dict[str, int] = Field(default_factory=dict)
    started_at: datetime | None = None
    uptime_seconds: float | None = None
    registry: dict[str, Any] | None = Field(None, description="the registry's record of the agent")
