"""What every deploy target (local processes now; containers, hosts later) implements: `DeployTarget`.

Targets import this module only, never the registry that finds them by name (targets.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from services.infrastructure.contract import DeployResult, DeployServicePayload, HealthReport
from services.infrastructure.models import (
    HealthCheckPayload,
    RestartServicePayload,
    RollbackPayload,
    RollbackResult,
    StopResult,
    StopServicePayload,
    UpdateConfigPayload,
    UpdateConfigResult,
)

# (environment, fencing token) -> None, or raises when the token is not the lock holder's right now.
TokenCheck = Callable[[str, int], None]


class DeployTarget(ABC):
    """Where releases run. Mutating calls must serialize per environment and honour fencing tokens:
    refuse one lower than the highest seen, and call the target's TokenCheck (when it has one) on
    every token under the environment's serialization, before changing anything."""

    name: str

    @abstractmethod
    def deploy(self, payload: DeployServicePayload) -> DeployResult:
        """Create a release, make it current, start and health-check it; restore the previous on failure."""

    @abstractmethod
    def rollback(self, payload: RollbackPayload) -> RollbackResult: ...

    @abstractmethod
    def health(self, payload: HealthCheckPayload) -> HealthReport: ...

    @abstractmethod
    def update_config(self, payload: UpdateConfigPayload) -> UpdateConfigResult: ...

    @abstractmethod
    def stop(self, payload: StopServicePayload) -> StopResult: ...

    @abstractmethod
    def restart(self, payload: RestartServicePayload) -> HealthReport: ...
