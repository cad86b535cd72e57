"""Registry-only settings (DEVTOOLS_REGISTRY_*); the shared ones come from shared.config.Settings."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEVTOOLS_REGISTRY_", extra="ignore")

    # An agent is offline after this many heartbeat intervals without a heartbeat.
    missed_heartbeats: int = Field(3, ge=1, le=100)
    # How often the sweeper looks for stale agents.
    sweep_interval_seconds: float = Field(2.0, gt=0, le=300)
    # Without DEVTOOLS_API_TOKEN every write is refused, unless this explicit dev flag is set.
    insecure_dev: bool = False
    # Changes another agent's record (deregisters or heartbeats it); the platform token every agent
    # holds does not. Unset: only an agent itself touches its record.
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(262_144, ge=1024)
    search_limit: int = Field(50, ge=1, le=1000)
