"""Request and response shapes of the agent-registry HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.http import BIGINT_MAX, StorableStr, storable_json

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
AgentStatus = Literal["idle", "busy", "draining", "offline"]
ReportedStatus = Literal["idle", "busy", "draining"]


class CapabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: StorableStr = Field("", max_length=2000)
    version: StorableStr = Field("1.0", max_length=64)


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(pattern=AGENT_ID_PATTERN)
    agent_name: StorableStr = Field(min_length=1, max_length=200)
    base_url: StorableStr = Field(min_length=8, max_length=2000)
    capabilities: list[CapabilityIn | str] = Field(default_factory=list, max_length=200)
    capacity: int = Field(1, ge=1, le=10_000)
    tags: list[StorableStr] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    heartbeat_interval_seconds: float = Field(10.0, gt=0, le=3600)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("capabilities")
    @classmethod
    def _normalize(cls, value: list[CapabilityIn | str]) -> list[CapabilityIn | str]:
        seen: dict[str, CapabilityIn] = {}
        for item in value:
            cap = CapabilityIn(name=item) if isinstance(item, str) else item
            seen.setdefault(cap.name, cap)
        return list(seen.values())

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag or len(tag) > 100:
                raise ValueError("each tag must be 1-100 characters")
        return sorted(set(value))

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        return storable_json(value)

    def capability_models(self) -> list[CapabilityIn]:
        return [c if isinstance(c, CapabilityIn) else CapabilityIn(name=c) for c in self.capabilities]


class HeartbeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Omitted status = "still alive, nothing changed": it never clears busy/draining.
    status: ReportedStatus | None = None
    active_requests: int | None = Field(None, ge=0, le=1_000_000)
    # Stored as a PostgreSQL bigint.
    seq: int | None = Field(None, ge=0, le=BIGINT_MAX)


class AgentView(BaseModel):
    agent_id: str
    agent_name: str
    base_url: str
    capabilities: list[dict[str, Any]]
    capacity: int
    active_requests: int
    status: AgentStatus
    tags: list[str]
    metadata: dict[str, Any]
    heartbeat_interval_seconds: float
    registered_at: datetime
    last_heartbeat: datetime
    status_changed_at: datetime
    score: float | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AgentView:
        return cls.model_validate({k: v for k, v in row.items() if k in cls.model_fields})


class RegisterResponse(BaseModel):
    agent: AgentView
    token: str
    created: bool


class HeartbeatResponse(BaseModel):
    agent_id: str
    status: AgentStatus
    applied_status: bool
    heartbeat_interval_seconds: float
