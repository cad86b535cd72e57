"""Apply `config/state/NNN_name.sql` in order, once each, guarded by checksums.

Applied files are recorded in `schema_migrations`; a recorded file whose text
changed is refused. A transaction-scoped advisory lock serializes concurrent
runners (several services starting at once), so each file runs exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from shared.resources import CONFIG_DIR

log = logging.getLogger(__name__)

MIGRATIONS_DIR = CONFIG_DIR / "state"
_FILE_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
# Arbitrary constant: the advisory lock key every migration runner agrees on.
MIGRATION_LOCK_KEY = 0x64657674_6F6F6C73 & 0x7FFFFFFFFFFFFFFF

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
)
"""
SELECT_APPLIED = "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
INSERT_APPLIED = (
    "INSERT INTO schema_migrations (version, name, checksum, duration_ms) VALUES (%s, %s, %s, %s)"
)
TABLE_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"


class MigrationError(RuntimeError):
    """A migration file is malformed, changed after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied: bool
    applied_at: object | None
    checksum_ok: bool


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: list[Migration] = []
    seen: dict[int, Path] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNN_name.sql (lowercase, underscores)")
        version = int(match.group(1))
        if version in seen:
            raise MigrationError(f"{path}: version {version} is also used by {seen[version].name}")
        seen[version] = path
        migrations.append(Migration(version, match.group(2), path, path.read_text()))
    return sorted(migrations, key=lambda m: m.version)


def _check_recorded(migrations: list[Migration], applied: dict[int, tuple]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (_name, checksum, _at) in applied.items():
        migration = by_version.get(version)
        if migration is None:
            continue  # applied by a newer checkout; leave it alone
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.path.name} changed after it was applied "
                f"(recorded sha256 {checksum[:12]}, file {migration.checksum[:12]}); "
                "add a new migration instead of editing an applied one"
            )


def _read_applied(conn: psycopg.Connection) -> dict[int, tuple]:
    rows = conn.execute(SELECT_APPLIED).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def upgrade(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations; returns the ones this call applied (empty when up to date)."""
    migrations = discover_migrations(directory)
    applied_now: list[Migration] = []
    with psycopg.connect(database_url, autocommit=False, application_name="devtools-migrate") as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(CREATE_MIGRATIONS_TABLE)
            applied = _read_applied(conn)
        _check_recorded(migrations, applied)
        for migration in migrations:
            if migration.version in applied:
                continue
            started = time.monotonic()
            # One transaction per file, holding the lock so a concurrent runner waits, then skips it.
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                recorded = conn.execute(
                    "SELECT checksum FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if recorded is not None:
                    _check_recorded([migration], {migration.version: (migration.name, recorded[0], None)})
                    continue
                try:
                    conn.execute(migration.sql.encode())
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.path.name} failed: {exc}".strip()) from exc
                duration_ms = int((time.monotonic() - started) * 1000)
                conn.execute(
                    INSERT_APPLIED, (migration.version, migration.name, migration.checksum, duration_ms)
                )
            log.info(
                "migration applied", extra={"migration": migration.path.name, "duration_ms": duration_ms}
            )
            applied_now.append(migration)
    return applied_now


def status(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[MigrationStatus]:
    migrations = discover_migrations(directory)
    with psycopg.connect(database_url, application_name="devtools-migrate") as conn:
        has_table = conn.execute(TABLE_EXISTS).fetchone()[0]  # type: ignore[index]
        applied = _read_applied(conn) if has_table else {}
    return [
        MigrationStatus(
            version=m.version,
            name=m.name,
            applied=m.version in applied,
            applied_at=applied[m.version][2] if m.version in applied else None,
            checksum_ok=m.version not in applied or applied[m.version][1] == m.checksum,
        )
        for m in migrations
    ]
