"""Real service processes for tests: the generic helpers (shared with the benchmarks, in
`support.bench.processes`) plus the test agents and request bodies the tests use."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent_orchestrator.stack import SERVICES
from services.infrastructure.env_state import EnvironmentDir
from support.bench.processes import (
    AGENT_AUTH,
    PLATFORM_TOKEN,
    REGISTRY_ADMIN_TOKEN,
    REPO_ROOT,
    ServiceProcess,
    free_port,
    registry_env,
    registry_record,
    running_registry,
    start_service,
    wait_healthy,
    wait_until,
)

# What an operator presents to change any agent's registry record.
ADMIN_AUTH = {"Authorization": f"Bearer {REGISTRY_ADMIN_TOKEN}"}

__all__ = [
    "ADMIN_AUTH",
    "AGENT_AUTH",
    "PLATFORM_TOKEN",
    "REGISTRY_ADMIN_TOKEN",
    "REPO_ROOT",
    "ServiceProcess",
    "agent_request_body",
    "env_without",
    "free_port",
    "kill_deployed_apps",
    "registry_env",
    "registry_record",
    "running_agent",
    "running_registry",
    "service_module",
    "start_echo_agent",
    "start_service",
    "wait_healthy",
    "wait_until",
]


def env_without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def start_echo_agent(
    env: dict[str, str], registry: ServiceProcess, log_dir: Path, *, replica: str | None = None, **extra: str
) -> ServiceProcess:
    """The echo test agent as a real process, registered with `registry`, heartbeating every 0.3 s."""
    port = free_port()
    agent_env = {
        **env,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_REGISTRY_URL": registry.url,
        "DEVTOOLS_AGENT_PORT": str(port),
        "DEVTOOLS_AGENT_HEARTBEAT_INTERVAL_SECONDS": "0.3",
        "DEVTOOLS_AGENT_CLAIM_IDLE_MS": "1000",
        **({"DEVTOOLS_AGENT_REPLICA": replica} if replica else {}),
        **extra,
    }
    name = f"echo-{replica or 'main'}-{port}"
    return start_service(name, "support.tests.agents.echo_agent", agent_env, port, log_dir)


def service_module(name: str) -> tuple[str, str]:
    """(module, port variable) of a service of the stack's catalog, e.g. "cicd"."""
    for spec in SERVICES:
        if spec.name == name:
            return spec.module, f"DEVTOOLS_{spec.port_setting.upper()}"
    raise KeyError(f"no service {name!r} in agent_orchestrator.stack.SERVICES")


def kill_deployed_apps(data_dir: Path) -> None:
    """Stop every app the infrastructure agent deployed under `data_dir` (they run in sessions of
    their own, so stopping the agent leaves them running)."""
    for state_file in (data_dir / "environments").glob("*/state.json"):
        process = EnvironmentDir(data_dir, state_file.parent.name).load().process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def running_agent(
    agent_id: str,
    module_env: dict[str, str],
    registry: ServiceProcess,
    log_dir: Path,
    *,
    module: str | None = None,
    **extra_env: str,
) -> Iterator[ServiceProcess]:
    """One agent service as a real process, registered with `registry`; terminated on exit, and
    every app it deployed stopped. The module and port variable come from the stack's catalog;
    `module` runs another module under the same id (the orchestrator agent without its host)."""
    catalog_module, port_variable = service_module(agent_id)
    port = free_port()
    env = {
        **module_env,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_REGISTRY_URL": registry.url,
        port_variable: str(port),
        "DEVTOOLS_LLM": "none",
        **extra_env,
    }
    service = start_service(agent_id, module or catalog_module, env, port, log_dir)
    try:
        wait_until(lambda: registry_record(registry, agent_id), what=f"{agent_id} registered")
        yield service
    finally:
        service.terminate()
        kill_deployed_apps(Path(module_env["DEVTOOLS_DATA_DIR"]))


def agent_request_body(
    target_agent: str, request_type: str, payload: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The JSON of an AgentRequestEvent as a test client sends it to POST /agent-request."""
    return {
        "source_agent": "tests",
        "target_agent": target_agent,
        "request_type": request_type,
        "payload": payload,
        **extra,
    }
