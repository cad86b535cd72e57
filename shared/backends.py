"""Resolve where PostgreSQL and Redis are: configured URLs, or the embedded servers."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shared.config import Settings
from shared.embedded import embedded_servers


@dataclass(frozen=True)
class Backends:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool

    def env(self) -> dict[str, str]:
        """Environment for child processes: they talk to the same servers and never start their own."""
        return {"DEVTOOLS_DATABASE_URL": self.database_url, "DEVTOOLS_REDIS_URL": self.redis_url}


def resolve_backends(settings: Settings, start: bool = True) -> Backends:
    """Configured URLs win; otherwise start (or reuse) the embedded servers under data_dir."""
    pg, rd = embedded_servers(settings.data_dir)
    database_url = settings.database_url
    redis_url = settings.redis_url
    if database_url is None:
        database_url = pg.ensure_running() if start else ""
    if redis_url is None:
        redis_url = rd.ensure_running() if start else rd.url
    return Backends(database_url, redis_url, settings.embedded_postgres, settings.embedded_redis)


def export_backends(backends: Backends) -> None:
    """Make this process's children (and later get_settings calls) use the resolved servers."""
    os.environ.update(backends.env())


def prepare_service_backends(settings: Settings) -> Settings:
    """Service start-up: resolve the servers, share them with children, apply pending migrations.

    Migrations are serialized by an advisory lock, so services starting together apply each file
    once; a migration that changed after it was applied stops the service with a one-line error.
    """
    import sys

    from shared import migrations

    backends = resolve_backends(settings)
    export_backends(backends)
    try:
        migrations.upgrade(backends.database_url)
    except migrations.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    resolved = {"database_url": backends.database_url, "redis_url": backends.redis_url}
    return settings.model_copy(update=resolved)
