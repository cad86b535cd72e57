"""The infrastructure agent's published contract: the DEPLOY_SERVICE payload and its DeployResult.

Another agent that hands a deploy over (cicd's DEPLOY_ARTIFACT) builds a DeployServicePayload and
reads the DeployResult; the infrastructure agent validates and answers with the same models, and
its other request types build on the same environment payloads. Self-contained on purpose: pydantic
and the standard library only, never another module of this package, so importing the contract
never pulls in the agent itself.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
RELEASE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
REF_PATTERN = r"^[^-\s][^\s]*$"


class EnvironmentPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = Field(pattern=ENVIRONMENT_PATTERN, description="e.g. staging, production, pr-42")
    target: str = Field("local", min_length=1, description="deploy target plug-in")


class FencedEnvironmentPayload(EnvironmentPayload):
    # The fencing token of the resource lock the caller holds on this environment (see RESOURCE_LOCKING).
    fencing_token: int | None = Field(None, ge=0)


class DeployServicePayload(FencedEnvironmentPayload):
    repo: str | None = Field(None, min_length=1, description="git repository to deploy from")
    ref: str = Field("HEAD", min_length=1, max_length=255, pattern=REF_PATTERN)
    artifact_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="a stored cicd artifact")
    # Overrides of the release's own [tool.devtools] settings.
    run_command: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    health_path: str | None = Field(None, pattern=r"^/")
    health_timeout_seconds: float | None = Field(None, gt=0, le=3600)
    max_restarts: int | None = Field(None, ge=0, le=100, description="restart-on-crash; 0 (default): off")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the same deploy sent again (a workflow step retried after a crash) carries the same "
        "key and is answered with the first one's result instead of deploying again",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.repo is None) == (self.artifact_sha256 is None):
            raise ValueError("exactly one of repo or artifact_sha256 must be given")
        return self


class HealthReport(BaseModel):
    environment: str
    status: Literal["up", "degraded", "down", "not_deployed"]
    healthy: bool
    release_id: str | None
    url: str | None
    http_status: int | None
    http_error: str | None
    process_alive: bool
    pid: int | None
    port: int | None
    error_lines: list[str]
    reason: str | None  # why it is not up, in words
    checked_at: str
    restarts: int = 0  # times the supervisor restarted the app since it was started (max_restarts > 0)
    diagnosis: str | None = None  # LLM prose, only with a model and only when not up
    llm_warning: str | None = None  # why `diagnosis` is missing although a model is configured


class DeployResult(BaseModel):
    environment: str
    status: Literal["deployed", "rolled_back", "failed"]
    release_id: str  # the release this request created
    active_release: str | None  # what serves now (the new one, or the restored previous one)
    previous_release: str | None
    message: str
    failure_reason: str | None = None
    health: HealthReport | None = None
    duration_seconds: float
    # True when the commit (or artifact) was already live and healthy: nothing was stopped or started.
    unchanged: bool = False
    # True when this is the recorded result of an earlier deploy with the same idempotency_key.
    replayed: bool = False
