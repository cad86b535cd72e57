"""DEPLOY_ARTIFACT: verify a stored artifact and have an infrastructure agent deploy it.

The artifact is re-hashed first (a corrupt blob never reaches an environment). The DEPLOY_SERVICE
request then goes over the event bus to any live agent with the `infrastructure` capability, the
way agents and workflows call each other here, and that agent's DeployResult is the answer. The
wait is bounded by what is left of this request's own deadline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.cicd.errors import DeployHandoffError, NoInfrastructureAgentError
from services.infrastructure.contract import ENVIRONMENT_PATTERN, DeployResult, DeployServicePayload
from shared.agents import RegistryClient, RegistryError
from shared.artifacts import ArtifactManifest, ArtifactStore
from shared.bus import ANY_AGENT, AgentRequestEvent, BusUnavailable, RequestPriority, ResponseStatus

log = logging.getLogger(__name__)

INFRASTRUCTURE_CAPABILITY = "infrastructure"
# Our caller waits until our own deadline: give up on infrastructure a little earlier so that the
# caller hears why instead of a bare timeout.
REPLY_MARGIN_SECONDS = 1.0


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
    max_restarts: int | None = Field(None, ge=0, le=100)


class DeployArtifactResult(DeployResult):
    """Infrastructure's DeployResult, plus which artifact it deployed and who deployed it."""

    artifact: ArtifactManifest
    infrastructure_agent: str
    deploy_request: dict[str, Any]  # the DEPLOY_SERVICE payload infrastructure was sent


@dataclass(frozen=True)
class PreparedDeploy:
    artifact: ArtifactManifest
    request: DeployServicePayload


def prepare_deploy(payload: DeployArtifactPayload, *, data_dir: Path) -> PreparedDeploy:
    """The verified artifact and the DEPLOY_SERVICE payload for it (blocking: re-hashes the blob)."""
    store = ArtifactStore(data_dir)
    store.verify(payload.artifact_sha256)  # unknown or corrupt artifacts fail here, not in the deploy
    return PreparedDeploy(store.get(payload.artifact_sha256), DeployServicePayload(**payload.model_dump()))


async def dispatch_deploy(
    prepared: PreparedDeploy,
    *,
    bus: Any,
    registry: RegistryClient | None,
    source_agent: str,
    seconds_left: float,
    correlation_id: str | None = None,
    priority: RequestPriority = RequestPriority.NORMAL,
) -> DeployArtifactResult:
    """Send DEPLOY_SERVICE to any infrastructure agent and return its DeployResult."""
    wait = seconds_left - REPLY_MARGIN_SECONDS
    if wait <= 0:
        raise DeployHandoffError(
            f"timeout_seconds: {seconds_left:.1f}s left is too little to wait for a deploy; "
            "give the DEPLOY_ARTIFACT request a longer timeout_seconds"
        )
    if registry is not None:
        await _require_live_infrastructure(registry)
    request_payload = prepared.request.model_dump(mode="json", exclude_none=True)
    event = AgentRequestEvent(
        source_agent=source_agent,
        target_agent=ANY_AGENT,
        required_capability=INFRASTRUCTURE_CAPABILITY,
        request_type="DEPLOY_SERVICE",
        payload=request_payload,
        timeout_seconds=wait,
        correlation_id=correlation_id,
        priority=priority,
    )
    try:
        response = await bus.request_agent(event, timeout=wait)
    except BusUnavailable as exc:
        raise DeployHandoffError(f"event bus unavailable, infrastructure not reached: {exc}") from exc
    if response.status == ResponseStatus.TIMEOUT:
        raise NoInfrastructureAgentError(
            f"no infrastructure agent answered DEPLOY_SERVICE within {wait:.1f}s "
            f"(is an agent with capability {INFRASTRUCTURE_CAPABILITY!r} running?)"
        )
    if response.status != ResponseStatus.SUCCESS or response.result is None:
        raise DeployHandoffError(
            f"infrastructure agent {response.source_agent!r} answered DEPLOY_SERVICE with "
            f"{response.status.value}: {response.error or 'no result'}"
        )
    deployed = DeployResult.model_validate(response.result)
    log.info(
        "artifact deployed",
        extra={"artifact": prepared.artifact.sha256, "environment": deployed.environment,
               "status": deployed.status, "agent": response.source_agent},
    )  # fmt: skip
    return DeployArtifactResult(
        **deployed.model_dump(),
        artifact=prepared.artifact,
        infrastructure_agent=response.source_agent,
        deploy_request=request_payload,
    )


async def _require_live_infrastructure(registry: RegistryClient) -> None:
    """Fail at once, with a clear message, when the registry knows no live infrastructure agent.

    The registry is only a shortcut: when it cannot answer, the bus request still finds an agent.
    """
    registry.invalidate_cache()  # a cached "none" from seconds ago must not refuse a deploy now
    try:
        found = await registry.best_fit([INFRASTRUCTURE_CAPABILITY])
    except RegistryError as exc:
        log.warning("registry check skipped", extra={"error": str(exc)})
        return
    if found is None:
        raise NoInfrastructureAgentError(
            f"no live infrastructure agent: the registry has no agent with capability "
            f"{INFRASTRUCTURE_CAPABILITY!r} (start one, e.g. `python -m services.infrastructure`)"
        )
