"""The deploy-target plug-in point: every target (local processes now; containers, hosts later)
implements `DeployTarget` (deploy_target.py), and `get_target` finds one by the name a request gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.infrastructure.deploy_target import DeployTarget, TokenCheck
from services.infrastructure.errors import UnknownTargetError
from services.infrastructure.local_target import LocalTarget

TargetFactory = Callable[[Path, TokenCheck | None], DeployTarget]
# The built-in targets; register_target adds more (or replaces one).
_TARGETS: dict[str, TargetFactory] = {"local": LocalTarget}


def register_target(name: str, factory: TargetFactory) -> None:
    _TARGETS[name] = factory


def available_targets() -> list[str]:
    return sorted(_TARGETS)


def get_target(name: str, data_dir: Path, token_check: TokenCheck | None = None) -> DeployTarget:
    factory = _TARGETS.get(name)
    if factory is None:
        raise UnknownTargetError(f"target {name!r} is not available (known: {', '.join(sorted(_TARGETS))})")
    return factory(data_dir, token_check)
