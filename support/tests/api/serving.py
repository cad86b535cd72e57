"""The orchestrator's one app served in-process by uvicorn on a free port, for the API tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from agent_orchestrator.api.app import create_orchestrator_app
from shared.agents import AgentServiceSettings
from shared.config import load_settings

TOKENS = "alice=tok-alice,bob=tok-bob"
READ_TOKENS = "viewer=tok-viewer"


async def _read_with_the_viewer_token(request: httpx.Request) -> None:
    """Reads need a token too: the tests' reads carry the read-only one unless they say otherwise;
    writes carry what each test gives (none: the 401 the write tests look for)."""
    if request.method == "GET" and "authorization" not in request.headers:
        request.headers["Authorization"] = "Bearer tok-viewer"


@asynccontextmanager
async def serving(
    database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **app_options: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """A client of the app once it is healthy, and the app (its `state.runs_runtime`)."""
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        data_dir=data_dir,
        api_token=TOKENS,
        api_read_token=READ_TOKENS,
    )
    # A socket that listens before uvicorn starts: connections queue in its backlog, so the
    # first request simply waits until the app has started and answers it.
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_orchestrator_app(
        settings,
        # The same app as the service's, without a registry to register with.
        agent_settings=AgentServiceSettings(port=port, registration=False),
        **app_options,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        hooks = {"request": [_read_with_the_viewer_token]}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, event_hooks=hooks
        ) as client:
            ready = await client.get("/health")
            assert ready.status_code == 200 and ready.json()["status"] == "healthy", ready.text
            yield client, app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()
