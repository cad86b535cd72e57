"""Services apply pending migrations when they start, so a fresh database needs no separate step."""

from pathlib import Path

import psycopg
import pytest

from shared import migrations
from support.tests.agents.processes import running_registry

pytestmark = pytest.mark.integration


def test_registry_started_on_an_empty_database_migrates_it(
    empty_database_url: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "DEVTOOLS_DATABASE_URL": empty_database_url}
    with running_registry(env, tmp_path) as registry:
        assert registry.process.poll() is None
    with psycopg.connect(empty_database_url) as conn:
        applied = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert applied == [m.version for m in migrations.discover_migrations()]
