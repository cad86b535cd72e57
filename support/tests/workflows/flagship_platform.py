"""The real platform for the flagship workflow tests: registry, the agents a workflow needs and the
orchestrator service, as processes on free ports, sharing one module's DB, Redis prefix and data dir.

Started once per test module (they take seconds); every app the infrastructure agent deployed
is killed at the end whatever the tests did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from agent_orchestrator.api.client import OrchestratorClient
from shared.bus import DATA_FIELD, BusKeys, InterAgentEvent
from support.tests.agents.processes import (
    AGENT_AUTH,
    PLATFORM_TOKEN,
    ServiceProcess,
    free_port,
    kill_deployed_apps,
    registry_record,
    running_registry,
    service_module,
    start_service,
    wait_until,
)


@dataclass
class Platform:
    env: dict[str, str]
    data_dir: Path
    log_dir: Path
    registry: ServiceProcess
    agents: dict[str, ServiceProcess] = field(default_factory=dict)
    orchestrators: list[ServiceProcess] = field(default_factory=list)
    agent_modules: dict[str, str] = field(default_factory=dict)

    @property
    def orchestrator(self) -> ServiceProcess:
        """The first orchestrator still running (the first started, until a test kills it)."""
        return next((o for o in self.orchestrators if o.process.poll() is None), self.orchestrators[0])

    def client(self, orchestrator: ServiceProcess | None = None) -> OrchestratorClient:
        return OrchestratorClient((orchestrator or self.orchestrator).url, PLATFORM_TOKEN, timeout=60)

    def agent_request(self, agent: str, request_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Ask an agent directly over HTTP (test set-up and checks, not the workflow path)."""
        body = {
            "source_agent": "tests",
            "target_agent": agent,
            "request_type": request_type,
            "payload": payload,
        }
        response = httpx.post(
            f"{self.agents[agent].url}/agent-request", headers=AGENT_AUTH, json=body, timeout=120
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def start_orchestrator(self, name: str = "orchestrator", **extra: str) -> ServiceProcess:
        port = free_port()
        env = {
            **self.env,
            "DEVTOOLS_ORCHESTRATOR_PORT": str(port),
            "DEVTOOLS_AGENT_REPLICA": name,
            **extra,
        }
        service = start_service(name, "agent_orchestrator.service", env, port, self.log_dir)
        self.orchestrators.append(service)
        return service

    def restart_agent(self, name: str) -> ServiceProcess:
        """Start agent `name` again (after it was killed): same module, port, replica and settings."""
        _module, port_var = service_module(name)
        port = int(self.agents[name].url.rsplit(":", 1)[1])
        env = {**self.env, port_var: str(port)}
        self.agents[name] = start_service(f"{name}-again", self.agent_modules[name], env, port, self.log_dir)
        wait_until(lambda: registry_record(self.registry, name), what=f"{name} registered")
        return self.agents[name]

    def bus_events(self, run_id: str) -> list[InterAgentEvent]:
        """The broadcast events of one run, read straight from the events stream."""
        client = redis.Redis.from_url(self.env["DEVTOOLS_REDIS_URL"])
        try:
            entries = client.xrange(BusKeys(self.env["DEVTOOLS_REDIS_PREFIX"]).events)
        finally:
            client.close()
        events = [InterAgentEvent.from_json(fields[DATA_FIELD.encode()]) for _id, fields in entries]
        return [e for e in events if e.correlation_id == run_id]

    def releases(self, environment: str) -> list[str]:
        folder = self.data_dir / "environments" / environment / "releases"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@contextlib.contextmanager
def running_platform(
    module_env: dict[str, str],
    log_dir: Path,
    agents: list[str],
    *,
    modules: dict[str, str] | None = None,
    **extra: str,
) -> Iterator[Platform]:
    """`modules` runs an agent from another module than the catalog's (one whose model is scripted)."""
    data_dir = Path(module_env["DEVTOOLS_DATA_DIR"])
    with running_registry(module_env, log_dir) as registry:
        env = {
            **module_env,
            "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
            "DEVTOOLS_REGISTRY_URL": registry.url,
            "DEVTOOLS_LLM": "none",
            "DEVTOOLS_AGENT_HEARTBEAT_INTERVAL_SECONDS": "1",
            "DEVTOOLS_DB_POOL_MAX": "6",
            **extra,
        }
        platform = Platform(env, data_dir, log_dir, registry)
        try:
            for name in agents:
                module, port_var = service_module(name)
                module = platform.agent_modules[name] = (modules or {}).get(name, module)
                port = free_port()
                platform.agents[name] = start_service(
                    name, module, {**env, port_var: str(port)}, port, log_dir
                )
            for name in agents:
                wait_until(lambda n=name: registry_record(registry, n), what=f"{name} registered")
            platform.start_orchestrator()
            yield platform
        finally:
            for service in [*platform.orchestrators, *platform.agents.values()]:
                if service.process.poll() is None:
                    try:
                        service.terminate(timeout=30)
                    except Exception:  # a hung process must not keep the others running
                        service.kill()
            kill_deployed_apps(data_dir)
