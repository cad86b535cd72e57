"""The deploy-target plug-in point: every target (local processes now; containers, hosts later)
implements `DeployTarget`, and `get_target` finds one by the name a request gives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from services.infrastructure.errors import UnknownTargetError
from services.infrastructure.models import (
    DeployResult,
    DeployServicePayload,
    HealthCheckPayload,
    HealthReport,
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


TargetFactory = Callable[[Path, TokenCheck | None], DeployTarget]
_TARGETS: dict[str, TargetFactory] = {}


def register_target(name: str, factory: TargetFactory) -> None:
    _TARGETS[name] = factory


def available_targets() -> list[str]:
    _load_builtin_targets()
    return sorted(_TARGETS)


def get_target(name: str, data_dir: Path, token_check: TokenCheck | None = None) -> DeployTarget:
    _load_builtin_targets()
    factory = _TARGETS.get(name)
    if factory is None:
        raise UnknownTargetError(f"target {name!r} is not available (known: {', '.join(sorted(_TARGETS))})")
    return factory(data_dir, token_check)


def _load_builtin_targets() -> None:
    # Imported lazily: the local target imports this module for the base class.
    if "local" not in _TARGETS:
        from services.infrastructure.local_target import LocalTarget

        register_target("local", LocalTarget)
