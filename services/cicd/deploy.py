"""DEPLOY_ARTIFACT: look up a stored artifact and prepare the DEPLOY_SERVICE request for infrastructure.

The bus hand-off itself belongs to the workflow layer; this skill answers with the exact
request (target agent, request type, validated payload) that is to be sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.cicd.artifacts import ArtifactManifest, ArtifactStore
from services.infrastructure.env_state import ENVIRONMENT_PATTERN
from services.infrastructure.models import DeployServicePayload


class DeployArtifactPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="as returned by VALIDATE_BUILD")
    environment: str = Field(pattern=ENVIRONMENT_PATTERN)
    target: str = Field("local", min_length=1)
    fencing_token: int | None = Field(None, ge=0)
    run_command: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    health_path: str | None = Field(None, pattern=r"^/")
    health_timeout_seconds: float | None = Field(None, gt=0, le=3600)


class DeployArtifactResult(BaseModel):
    artifact: ArtifactManifest
    target_agent: Literal["infrastructure"] = "infrastructure"
    request_type: Literal["DEPLOY_SERVICE"] = "DEPLOY_SERVICE"
    payload: dict[str, Any]  # a valid DeployServicePayload, as JSON


def deploy_artifact(payload: DeployArtifactPayload, *, data_dir: Path) -> DeployArtifactResult:
    store = ArtifactStore(data_dir)
    store.verify(payload.artifact_sha256)  # unknown or corrupt artifacts fail here, not in the deploy
    manifest = store.get(payload.artifact_sha256)
    request = DeployServicePayload(**payload.model_dump())
    return DeployArtifactResult(artifact=manifest, payload=request.model_dump(mode="json", exclude_none=True))
