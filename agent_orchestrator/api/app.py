"""`create_orchestrator_app(settings)`: the orchestrator process's one app, for the service and the tests.

One process, one port (8001):

- the orchestrator **agent** (`services.orchestrator_agent`: DECOMPOSE_TASK, ROUTE_REQUEST,
  AGGREGATE_RESULTS, GET_STATUS), registered with the registry, served on the bus and on
  `POST /agent-request`;
- the **runs API** (`agent_orchestrator.api.runs`: `/runs`, approvals, events, history, replay);
- **N run workers** executing the registered workflows; their nodes call the other agents
  through this process's own bus.

The agent service's app is the base; the runs router is mounted on it and its lifespan is wrapped
so the runs runtime and workers start after the agent (they need its bus) and stop before it.
With ``workers=0`` the process is API-only (runs execute in `python -m agent_orchestrator.runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI

from agent_orchestrator.api.auth import reader
from agent_orchestrator.api.collaboration import router as collaboration_router
from agent_orchestrator.api.collaboration import socket_router as collaboration_socket_router
from agent_orchestrator.api.gates import router as gates_router
from agent_orchestrator.api.runs import router as runs_router
from agent_orchestrator.api.tasks import router as tasks_router
from agent_orchestrator.api.ticket_context import router as ticket_context_router
from agent_orchestrator.api.tickets import router as tickets_router
from agent_orchestrator.collaboration import (
    MESSAGES_CHANNEL,
    Collaboration,
    CollaborationEngine,
    CollaborationStore,
)
from agent_orchestrator.collaboration.reactions import ReviewReactions
from agent_orchestrator.runs.notify import Listener
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from agent_orchestrator.runs.workflow_table import WorkflowTable
from agent_orchestrator.tasks import TaskStore
from agent_orchestrator.tasks.dispatcher import Dispatcher, DispatcherOptions
from agent_orchestrator.tickets import TicketWaker
from agent_orchestrator.workflows.agent_calls import close_resources, install_resources
from services.orchestrator_agent.agent import agent as orchestrator_agent
from shared.agents import AgentService, AgentServiceSettings, RegistryClient
from shared.backends import resolve_backends
from shared.config import Settings

log = logging.getLogger(__name__)


def create_orchestrator_app(
    settings: Settings,
    *,
    agent_settings: AgentServiceSettings | None = None,
    workers: int = 1,
    worker_options: WorkerOptions | None = None,
    workflows: WorkflowTable | None = None,
    dispatchers: int = 1,
    dispatcher_options: DispatcherOptions | None = None,
) -> FastAPI:
    """The orchestrator's app; `app.state.agent_service` is its agent service (port, drain).

    With ``dispatchers=1`` it also hands ready tasks to agents and wakes ticket runs whose tasks
    are done (several orchestrator processes may each run one)."""
    service = AgentService(orchestrator_agent, settings, agent_settings or AgentServiceSettings())
    app: FastAPI = service.app
    app.state.settings = settings
    app.state.agent_service = service
    # Reads need a token as much as writes do (run inputs and reports are not public).
    readers = [Depends(reader)]
    routers = (
        runs_router,
        tickets_router,
        tasks_router,
        gates_router,
        ticket_context_router,
        collaboration_router,
    )
    for router in routers:
        app.include_router(router, dependencies=readers)
    app.include_router(collaboration_socket_router)  # authenticates its own handshake (a WebSocket)
    agent_lifespan = app.router.lifespan_context
    options = worker_options or WorkerOptions()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with agent_lifespan(app):
            assert service.bus is not None
            install_resources(settings, service.bus)
            database_url = settings.database_url or resolve_backends(settings).database_url
            runtime = await RunsRuntime.open(
                database_url,
                workflows=workflows,
                pool_max=max(settings.db_pool_max, workers * options.concurrency + 2),
                name="devtools-orchestrator",
            )
            app.state.runs_runtime = runtime
            collaboration = Collaboration(CollaborationStore(runtime.pool), service.bus)
            collab_listener = Listener(database_url, [MESSAGES_CHANNEL], name="devtools-collab-sockets")
            await collab_listener.start()
            app.state.collaboration, app.state.collab_listener = collaboration, collab_listener
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(runtime.worker(options).run(stop), name=f"run-worker-{i}")
                for i in range(workers)
            ]
            registry = service.registry or RegistryClient.from_settings(settings)
            if dispatchers:
                dispatcher = Dispatcher(
                    TaskStore(runtime.pool), service.bus, registry, database_url, dispatcher_options
                )
                waker = TicketWaker(runtime.pool, database_url)
                tasks.append(asyncio.create_task(dispatcher.run(stop), name="task-dispatcher"))
                tasks.append(asyncio.create_task(waker.run(stop), name="ticket-waker"))
                engine = CollaborationEngine(collaboration, service.bus, registry, database_url)
                reactions = ReviewReactions(collaboration, database_url)
                tasks.append(asyncio.create_task(engine.run(stop), name="collaboration-engine"))
                tasks.append(asyncio.create_task(reactions.run(stop), name="collaboration-reactions"))
            log.info("orchestrator ready", extra={"workers": workers, "workflows": runtime.workflows.names()})
            try:
                yield
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await close_resources()
                await collab_listener.stop()
                if registry is not service.registry:
                    await registry.close()
                await runtime.close()

    async def database_health() -> dict[str, Any]:
        runtime: RunsRuntime | None = getattr(app.state, "runs_runtime", None)
        if runtime is None:
            return {"status": "starting"}
        try:
            async with runtime.pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # health reports any failure instead of raising
            return {"status": "unhealthy", "database": str(exc)}
        return {"database": "ok", "workflows": runtime.workflows.names()}

    app.router.lifespan_context = lifespan
    service.health_probes.append(database_health)
    return app
