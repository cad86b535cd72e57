"""Test infrastructure: isolated databases cloned from a migrated template, isolated Redis keyspaces.

Tests run against the configured servers (DEVTOOLS_DATABASE_URL / DEVTOOLS_REDIS_URL,
as CI sets them) or, where those are unset, the embedded servers under .devtools/test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from shared import migrations
from shared.db import with_database
from shared.embedded import embedded_servers

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DATA_DIR = REPO_ROOT / ".devtools" / "test"
TEST_DB_PREFIX = "devtools_t_"
TEMPLATE_LOCK_KEY = 0x74657374  # advisory key serializing template builds across pytest sessions


@dataclass(frozen=True)
class TestServers:
    server_url: str  # any database on the server; used for CREATE/DROP DATABASE
    redis_url: str


def resolve_test_servers() -> TestServers:
    database_url = os.environ.get("DEVTOOLS_DATABASE_URL") or None
    redis_url = os.environ.get("DEVTOOLS_REDIS_URL") or None
    pg, rd = embedded_servers(TEST_DATA_DIR)
    return TestServers(database_url or pg.ensure_running(), redis_url or rd.ensure_running())


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True, application_name="devtools-tests")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_orphaned_databases(server_url: str) -> None:
    """Drop test databases left by pytest processes that died before their teardown."""
    with _admin(server_url) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{TEST_DB_PREFIX}%",)
            )
        ]
        for name in names:
            try:
                pid = int(name.removeprefix(TEST_DB_PREFIX).split("_")[0])
            except ValueError:
                continue
            if not _pid_alive(pid):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        # Templates of older migration sets; one still being cloned is in use and stays.
        current = template_name()
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'devtools_tpl_%'"):
            if name != current and "_b" not in name.removeprefix("devtools_tpl_"):
                with contextlib.suppress(psycopg.errors.ObjectInUse):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def template_name() -> str:
    digest = hashlib.sha256()
    for migration in migrations.discover_migrations():
        digest.update(f"{migration.version}:{migration.checksum}".encode())
    return f"devtools_tpl_{digest.hexdigest()[:12]}"


def ensure_template(server_url: str) -> str:
    """A database with every migration applied, built once per migration set and reused by clones."""
    name = template_name()
    with _admin(server_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return name
            building = f"{name}_b{uuid.uuid4().hex[:6]}"
            conn.execute(f'CREATE DATABASE "{building}"')
            migrations.upgrade(with_database(server_url, building))
            conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            return name
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (TEMPLATE_LOCK_KEY,))


def create_database(server_url: str, template: str | None) -> str:
    name = f"{TEST_DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        _create(server_url, name, template)
    except psycopg.errors.InvalidCatalogName:
        # Another test session with a different migration set (a checkout being edited) dropped
        # this set's template as "older": build it again rather than fail the test.
        assert template is not None
        _create(server_url, name, ensure_template(server_url))
    return with_database(server_url, name)


def _create(server_url: str, name: str, template: str | None) -> None:
    with _admin(server_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
        try:
            template_clause = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{template_clause}')
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (TEMPLATE_LOCK_KEY,))


def drop_database(server_url: str, database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_keyspace(redis_url: str, prefix: str) -> None:
    """Delete every key a test wrote under its prefix."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
