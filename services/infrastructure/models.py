"""Payloads and results of the infrastructure agent's request types (validated: bad input names its field)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.infrastructure.env_file import validate_entry
from services.infrastructure.env_state import ENVIRONMENT_PATTERN, RELEASE_PATTERN

REF_PATTERN = r"^[^-\s][^\s]*$"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = Field(pattern=ENVIRONMENT_PATTERN, description="e.g. staging, production, pr-42")
    target: str = Field("local", min_length=1, description="deploy target plug-in")


class _Fenced(_Payload):
    # The fencing token of the resource lock the caller holds on this environment (see RESOURCE_LOCKING).
    fencing_token: int | None = Field(None, ge=0)


class DeployServicePayload(_Fenced):
    repo: str | None = Field(None, min_length=1, description="git repository to deploy from")
    ref: str = Field("HEAD", min_length=1, max_length=255, pattern=REF_PATTERN)
    artifact_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="a stored cicd artifact")
    # Overrides of the release's own [tool.devtools] settings.
    run_command: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    health_path: str | None = Field(None, pattern=r"^/")
    health_timeout_seconds: float | None = Field(None, gt=0, le=3600)
    max_restarts: int | None = Field(None, ge=0, le=100, description="restart-on-crash; 0 (default): off")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.repo is None) == (self.artifact_sha256 is None):
            raise ValueError("exactly one of repo or artifact_sha256 must be given")
        return self


class RollbackPayload(_Fenced):
    release_id: str | None = Field(None, pattern=RELEASE_PATTERN, description="default: the previous release")


class HealthCheckPayload(_Payload):
    pass


class StopServicePayload(_Fenced):
    pass


class RestartServicePayload(_Fenced):
    pass


class UpdateConfigPayload(_Fenced):
    values: dict[str, str] = Field(default_factory=dict, description="variables to set")
    unset: list[str] = Field(default_factory=list, description="variables to remove")
    revert: bool = Field(False, description="restore the env file as it was before the last update")
    restart: bool = Field(True, description="restart the running app so it reads the new values")

    @field_validator("values")
    @classmethod
    def _valid_entries(cls, values: dict[str, str]) -> dict[str, str]:
        for key, value in values.items():
            validate_entry(key, value)  # ConfigValidationError is a ValueError: pydantic names the field
        return values

    @field_validator("unset")
    @classmethod
    def _valid_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            validate_entry(key, "")
        return keys

    @model_validator(mode="after")
    def _something_to_do(self) -> Self:
        if self.revert and (self.values or self.unset):
            raise ValueError("revert cannot be combined with values or unset")
        if not (self.revert or self.values or self.unset):
            raise ValueError("nothing to do: give values, unset or revert")
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


class RollbackResult(BaseModel):
    environment: str
    status: Literal["rolled_back", "failed"]
    from_release: str | None
    to_release: str
    message: str
    health: HealthReport | None = None


class UpdateConfigResult(BaseModel):
    environment: str
    status: Literal[
        "applied", "reverted"
    ]  # reverted: the new values failed the health check, old ones restored
    keys_changed: list[str]
    restarted: bool
    message: str
    health: HealthReport | None = None


class StopResult(BaseModel):
    environment: str
    stopped: bool  # False when nothing was running
    release_id: str | None
    message: str
