"""Module-scoped fixtures: one registry process per test module, on its own DB, prefix and port,
`agent_service`, the agent the module is about, and `echo`, the test agent, as real registered processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tests.agents.processes import (
    ServiceProcess,
    registry_record,
    running_agent,
    running_registry,
    start_echo_agent,
    wait_until,
)
from support.tests.infra import delete_keyspace


@pytest.fixture(scope="module")
def module_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_keyspace(redis_url, prefix)


@pytest.fixture(scope="module")
def module_env(
    database_url: str, redis_url: str, module_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTOOLS_")}
    env.update(
        DEVTOOLS_DATABASE_URL=database_url,
        DEVTOOLS_REDIS_URL=redis_url,
        DEVTOOLS_REDIS_PREFIX=module_prefix,
        DEVTOOLS_DATA_DIR=str(tmp_path_factory.mktemp("data")),
        DEVTOOLS_LOG_FORMAT="json",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    return env


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def registry(module_env: dict[str, str], log_dir: Path) -> Iterator[ServiceProcess]:
    with running_registry(module_env, log_dir) as service:
        yield service


@pytest.fixture(scope="module")
def echo(module_env: dict[str, str], registry: ServiceProcess, log_dir: Path) -> Iterator[ServiceProcess]:
    """The echo test agent (support/tests/agents/echo_agent.py) as a real process, registered."""
    agent = start_echo_agent(module_env, registry, log_dir)
    try:
        wait_until(lambda: registry_record(registry, "echo"), what="echo registered")
        yield agent
    finally:
        agent.terminate()


@pytest.fixture(scope="module")
def agent_service(
    request: pytest.FixtureRequest, module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[ServiceProcess]:
    """The agent a test module is about, started once per module and registered with its registry.

    The module names it by indirect parametrization, with options for `running_agent`::

        pytestmark = pytest.mark.parametrize("agent_service", ["cicd"], indirect=True)
        # another module under the catalog's id, or extra environment:
        pytestmark = pytest.mark.parametrize(
            "agent_service", [("orchestrator", {"module": "services.orchestrator_agent"})], indirect=True
        )
    """
    name, options = request.param if isinstance(request.param, tuple) else (request.param, {})
    with running_agent(name, module_env, registry, log_dir, **options) as service:
        yield service
