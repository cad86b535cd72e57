"""The orchestrator service: one process, one port (8001).

- the orchestrator **agent** (`services.orchestrator_agent`: DECOMPOSE_TASK, ROUTE_REQUEST,
  AGGREGATE_RESULTS, GET_STATUS), registered with the registry, served on the bus and on
  `POST /agent-request`;
- the **runs API** (`agent_orchestrator.api.runs`: `/runs`, approvals, events, history, replay);
- **N run workers** executing the flagship workflows (`agent_orchestrator.workflows.catalog`);
  their nodes call the other agents through this process's own bus.

The agent runtime's app is the base; the runs router is mounted on it and its lifespan is
wrapped so the runs runtime and workers start after the agent (they need its bus) and stop
before it. Run it with `python -m agent_orchestrator.service` (or `python -m services.orchestrator`).

DEVTOOLS_ORCHESTRATOR_WORKERS (1), _CONCURRENCY (4 runs per worker) and _LEASE_SECONDS (30)
size the workers; 0 workers makes this process API-only (workers elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_orchestrator.api.runs import router as runs_router
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from agent_orchestrator.workflows import catalog
from agent_orchestrator.workflows.agent_calls import close_services, install_services
from services.orchestrator_agent.agent import agent as orchestrator_agent
from shared.config import Settings, SettingsError, load_settings
from shared.lib.agent_service import AgentRuntimeSettings, AgentService

log = logging.getLogger(__name__)


class OrchestratorServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEVTOOLS_ORCHESTRATOR_", extra="ignore")

    workers: int = Field(1, ge=0, le=16)
    concurrency: int = Field(4, ge=1, le=64)
    lease_seconds: float = Field(30.0, gt=0, le=3600)


def create_orchestrator_service(
    settings: Settings,
    agent_settings: AgentRuntimeSettings | None = None,
    service_settings: OrchestratorServiceSettings | None = None,
) -> AgentService:
    """The agent service with the runs API and workers attached; `.app` is what uvicorn serves."""
    if settings.database_url is None:
        raise SettingsError("DEVTOOLS_DATABASE_URL: the orchestrator service needs a resolved database URL")
    options = service_settings or OrchestratorServiceSettings()
    service = AgentService(orchestrator_agent, settings, agent_settings or AgentRuntimeSettings())
    app: FastAPI = service.app
    app.state.settings = settings
    app.include_router(runs_router)
    agent_lifespan = app.router.lifespan_context
    worker_options = WorkerOptions(concurrency=options.concurrency, lease_seconds=options.lease_seconds)
    database_url = settings.database_url

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with agent_lifespan(app):
            assert service.bus is not None
            install_services(settings, service.bus)
            runtime = await RunsRuntime.open(
                database_url,
                pool_max=max(settings.db_pool_max, options.workers * options.concurrency + 2),
                name="devtools-orchestrator",
            )
            app.state.runs_runtime = runtime
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(runtime.worker(worker_options).run(stop), name=f"run-worker-{i}")
                for i in range(options.workers)
            ]
            log.info(
                "orchestrator ready",
                extra={"workers": options.workers, "workflows": runtime.registry.names()},
            )
            try:
                yield
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await close_services()
                await runtime.close()

    app.router.lifespan_context = lifespan
    return service


def main() -> None:
    from shared.backends import prepare_service_backends
    from shared.lib.http_service import serve
    from shared.logging import configure_logging

    try:
        settings = load_settings()
        agent_settings = AgentRuntimeSettings()
        service_settings = OrchestratorServiceSettings()
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    settings = prepare_service_backends(settings)
    log.info("workflows", extra={"workflows": list(catalog.FLAGSHIP_WORKFLOWS)})
    try:
        service = create_orchestrator_service(settings, agent_settings, service_settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(service.app, settings.host, service.port, on_exit_signal=service.begin_drain)


if __name__ == "__main__":
    main()
