"""Which services the platform runs: name -> module -> port setting -> registry id.

A service is a process that serves HTTP on its own port: the agent registry, each agent, and the
orchestrator. Which services exist is data: a row whose module cannot be run yet is skipped, so an
agent added later appears by adding one row.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port_setting: str
    # The id it registers under in the registry (None: the registry itself).
    agent_id: str | None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("agent-registry", "services.agent_registry", "registry_port", None),
    ServiceSpec("feature-dev", "services.feature_dev", "feature_dev_port", "feature-dev"),
    ServiceSpec("code-review", "services.code_review", "code_review_port", "code-review"),
    ServiceSpec("infrastructure", "services.infrastructure", "infrastructure_port", "infrastructure"),
    ServiceSpec("cicd", "services.cicd", "cicd_port", "cicd"),
    ServiceSpec("documentation", "services.documentation", "documentation_port", "documentation"),
    # The orchestrator service: the orchestrator agent + the runs API + run workers, on one port.
    ServiceSpec("orchestrator", "agent_orchestrator.service", "orchestrator_port", "orchestrator"),
)


def runnable(module: str) -> bool:
    """`python -m module` would run: a plain module, or a package with a `__main__`."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            return False
        if spec.submodule_search_locations is None:
            return True
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def available_services(specs: tuple[ServiceSpec, ...] = SERVICES) -> list[ServiceSpec]:
    """The rows whose service module exists and is runnable (`python -m <module>`)."""
    return [spec for spec in specs if runnable(spec.module)]
