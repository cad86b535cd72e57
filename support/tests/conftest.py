"""Fixtures every test can use: isolated databases and Redis keyspaces on real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.config import Settings, load_settings
from support.tests import infra

# Module-scoped fixtures for tests that run services as processes (one registry per module).
from support.tests.agents.fixtures import (  # noqa: F401
    agent_service,
    echo,
    log_dir,
    module_env,
    module_prefix,
    registry,
)
from support.tests.bus.fixtures import requester, server  # noqa: F401

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def test_servers() -> infra.TestServers:
    servers = infra.resolve_test_servers()
    infra.drop_orphaned_databases(servers.server_url)
    return servers


@pytest.fixture(scope="session")
def template_database(test_servers: infra.TestServers) -> str:
    return infra.ensure_template(test_servers.server_url)


@pytest.fixture(scope="session")
def make_database(test_servers: infra.TestServers, template_database: str) -> Iterator[Callable[..., str]]:
    """Factory: a new migrated database (or an empty one with migrated=False), dropped at session end."""
    created: list[str] = []

    def factory(migrated: bool = True) -> str:
        url = infra.create_database(test_servers.server_url, template_database if migrated else None)
        created.append(url)
        return url

    yield factory
    for url in created:
        infra.drop_database(test_servers.server_url, url)


@pytest.fixture(scope="module")
def database_url(make_database: Callable[..., str]) -> str:
    """A migrated database of this test module's own."""
    return make_database()


@pytest.fixture
def empty_database_url(make_database: Callable[..., str]) -> str:
    """A database with nothing in it, for tests of the migration runner itself."""
    return make_database(migrated=False)


@pytest.fixture(scope="session")
def redis_url(test_servers: infra.TestServers) -> str:
    return test_servers.redis_url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A keyspace of this test's own; every key under it is deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    infra.delete_keyspace(redis_url, prefix)


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return load_settings(
        database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix, data_dir=tmp_path / "data"
    )


@pytest.fixture
def service_env(settings: Settings) -> dict[str, str]:
    """Environment for a child process (a service under test) that uses this test's servers and keyspace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTOOLS_")}
    env.update(
        DEVTOOLS_DATABASE_URL=settings.database_url or "",
        DEVTOOLS_REDIS_URL=settings.redis_url or "",
        DEVTOOLS_REDIS_PREFIX=settings.redis_prefix,
        DEVTOOLS_DATA_DIR=str(settings.data_dir),
        DEVTOOLS_LOG_FORMAT="json",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    return env
