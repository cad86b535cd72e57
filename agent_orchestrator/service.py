"""The orchestrator service's process: `python -m agent_orchestrator.service` (port 8001).

It serves `create_orchestrator_app` with the flagship workflows registered.
DEVTOOLS_ORCHESTRATOR_WORKERS (1), _CONCURRENCY (4 runs per worker) and _LEASE_SECONDS (30)
size the workers; 0 workers makes this process API-only (workers elsewhere). _DISPATCHERS (1)
runs the task dispatcher and the ticket waker here (0: in another orchestrator process).
"""

from __future__ import annotations

import logging
import sys

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_orchestrator.api.app import create_orchestrator_app
from agent_orchestrator.runs.worker import WorkerOptions
from agent_orchestrator.workflows import catalog
from shared.agents import AgentServiceSettings
from shared.config import SettingsError, load_settings

log = logging.getLogger(__name__)


class OrchestratorServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEVTOOLS_ORCHESTRATOR_", extra="ignore")

    workers: int = Field(1, ge=0, le=16)
    concurrency: int = Field(4, ge=1, le=64)
    lease_seconds: float = Field(30.0, gt=0, le=3600)
    # Task dispatchers (with the ticket waker): 0 leaves tasks to other orchestrator processes.
    dispatchers: int = Field(1, ge=0, le=1)


def main() -> None:
    from shared.backends import prepare_service_backends
    from shared.http import serve
    from shared.logging import configure_logging

    try:
        settings = load_settings()
        agent_settings = AgentServiceSettings()
        options = OrchestratorServiceSettings()
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    settings = prepare_service_backends(settings)
    if settings.database_url is None:
        print("error: DEVTOOLS_DATABASE_URL: the orchestrator service needs a resolved database URL")
        sys.exit(2)
    log.info("workflows", extra={"workflows": list(catalog.FLAGSHIP_WORKFLOWS)})
    try:
        app = create_orchestrator_app(
            settings,
            agent_settings=agent_settings,
            workers=options.workers,
            dispatchers=options.dispatchers,
            worker_options=WorkerOptions(
                concurrency=options.concurrency, lease_seconds=options.lease_seconds
            ),
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    service = app.state.agent_service
    serve(app, settings.host, service.port, on_exit_signal=service.begin_drain)


if __name__ == "__main__":
    main()
