"""Payloads and results of the infrastructure agent's request types (validated: bad input names its field).

DEPLOY_SERVICE's payload and result, and the HealthReport, are the published contract (contract.py).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from services.infrastructure.contract import (
    RELEASE_PATTERN,
    EnvironmentPayload,
    FencedEnvironmentPayload,
    HealthReport,
)
from services.infrastructure.env_file import validate_entry


class RollbackPayload(FencedEnvironmentPayload):
    release_id: str | None = Field(None, pattern=RELEASE_PATTERN, description="default: the previous release")


class HealthCheckPayload(EnvironmentPayload):
    """Which environment to probe (a read: no fencing token)."""


class StopServicePayload(FencedEnvironmentPayload):
    """Stop the environment's app (a change: fenced like a deploy)."""


class RestartServicePayload(FencedEnvironmentPayload):
    """Restart the live release (a change: fenced like a deploy)."""


class UpdateConfigPayload(FencedEnvironmentPayload):
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
