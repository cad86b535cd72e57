"""`create_orchestrator_app(settings)`: the orchestrator's FastAPI app with the run endpoints.

The orchestrator service reuses this factory. With ``workers > 0`` the process also
runs that many queue workers; otherwise runs are executed by separate worker
processes (``python -m agent_orchestrator.runs``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from agent_orchestrator.api.runs import router as runs_router
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from agent_orchestrator.workflows.registry import WorkflowRegistry
from shared.backends import resolve_backends
from shared.config import Settings
from shared.lib.http_service import create_service_app


def create_orchestrator_app(
    settings: Settings,
    *,
    registry: WorkflowRegistry | None = None,
    workers: int = 0,
    worker_options: WorkerOptions | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_url = settings.database_url or resolve_backends(settings).database_url
        runtime = await RunsRuntime.open(
            database_url, registry=registry, pool_max=settings.db_pool_max, name="devtools-orchestrator"
        )
        app.state.runs_runtime = runtime
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(runtime.worker(worker_options).run(stop), name=f"run-worker-{i}")
            for i in range(workers)
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.close()

    async def health() -> dict[str, Any]:
        runtime: RunsRuntime | None = getattr(app.state, "runs_runtime", None)
        if runtime is None:
            return {"status": "starting"}
        try:
            async with runtime.pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # health reports any failure instead of raising
            return {"status": "unhealthy", "database": str(exc)}
        return {"status": "healthy", "database": "ok", "workflows": runtime.registry.names()}

    app = create_service_app("orchestrator", lifespan=lifespan, health=health)
    app.state.settings = settings
    app.include_router(runs_router)
    return app
