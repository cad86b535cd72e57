from __future__ import annotations

import multiprocessing
from pathlib import Path

import psycopg
import pytest

from shared import migrations
from shared.migrations import MigrationError

pytestmark = pytest.mark.integration


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def _ordered_set(directory: Path) -> None:
    # Numeric order, not lexical by accident: 002 must run before 010, and each records itself.
    _write(directory, "001_log.sql", "CREATE TABLE applied_log (n serial PRIMARY KEY, file text NOT NULL);")
    _write(directory, "010_third.sql", "INSERT INTO applied_log (file) VALUES ('010');")
    _write(directory, "002_second.sql", "INSERT INTO applied_log (file) VALUES ('002');")


def _log(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT file FROM applied_log ORDER BY n")]


def test_applies_in_order_and_records_checksums(empty_database_url: str, tmp_path: Path) -> None:
    _ordered_set(tmp_path)
    applied = migrations.upgrade(empty_database_url, tmp_path)
    assert [m.version for m in applied] == [1, 2, 10]
    assert _log(empty_database_url) == ["002", "010"]
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()
    expected = {m.version: m.checksum for m in migrations.discover_migrations(tmp_path)}
    assert dict(rows) == expected


def test_second_run_is_a_noop(empty_database_url: str, tmp_path: Path) -> None:
    _ordered_set(tmp_path)
    migrations.upgrade(empty_database_url, tmp_path)
    assert migrations.upgrade(empty_database_url, tmp_path) == []
    assert _log(empty_database_url) == ["002", "010"]
    assert all(s.applied and s.checksum_ok for s in migrations.status(empty_database_url, tmp_path))


def test_new_file_is_applied_later(empty_database_url: str, tmp_path: Path) -> None:
    _ordered_set(tmp_path)
    migrations.upgrade(empty_database_url, tmp_path)
    _write(tmp_path, "011_fourth.sql", "INSERT INTO applied_log (file) VALUES ('011');")
    assert [m.version for m in migrations.upgrade(empty_database_url, tmp_path)] == [11]
    assert _log(empty_database_url) == ["002", "010", "011"]


def test_changed_applied_file_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    _ordered_set(tmp_path)
    migrations.upgrade(empty_database_url, tmp_path)
    _write(tmp_path, "002_second.sql", "INSERT INTO applied_log (file) VALUES ('edited');")
    with pytest.raises(MigrationError, match=r"002_second.sql changed after it was applied"):
        migrations.upgrade(empty_database_url, tmp_path)
    statuses = {s.version: s for s in migrations.status(empty_database_url, tmp_path)}
    assert statuses[2].checksum_ok is False and statuses[10].checksum_ok is True
    assert _log(empty_database_url) == ["002", "010"]


def test_failing_file_is_rolled_back_and_not_recorded(empty_database_url: str, tmp_path: Path) -> None:
    _write(tmp_path, "001_ok.sql", "CREATE TABLE ok_table (id int);")
    _write(tmp_path, "002_broken.sql", "CREATE TABLE half (id int); SELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match=r"002_broken\.sql failed"):
        migrations.upgrade(empty_database_url, tmp_path)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]


@pytest.mark.parametrize("bad_name", ["1_short.sql", "003-dash.sql", "004_Upper.sql"])
def test_malformed_file_names_are_refused(tmp_path: Path, bad_name: str) -> None:
    _write(tmp_path, bad_name, "SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_name\.sql"):
        migrations.discover_migrations(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "001_a.sql", "SELECT 1;")
    _write(tmp_path, "001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="version 1 is also used"):
        migrations.discover_migrations(tmp_path)


def _upgrade_in_process(database_url: str, directory: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    migrations.upgrade(database_url, Path(directory))


def test_concurrent_runners_apply_each_file_once(empty_database_url: str, tmp_path: Path) -> None:
    # pg_sleep widens the window in which a second runner could apply the same file.
    _write(tmp_path, "001_table.sql", "CREATE TABLE runs (file text NOT NULL); SELECT pg_sleep(0.3);")
    _write(tmp_path, "002_row.sql", "INSERT INTO runs VALUES ('002'); SELECT pg_sleep(0.3);")
    _write(tmp_path, "003_row.sql", "INSERT INTO runs VALUES ('003');")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [
        ctx.Process(target=_upgrade_in_process, args=(empty_database_url, str(tmp_path), start))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT file FROM runs ORDER BY file").fetchall() == [("002",), ("003",)]
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (3,)


def test_project_migrations_apply_to_an_empty_database(empty_database_url: str) -> None:
    applied = migrations.upgrade(empty_database_url)
    assert [m.version for m in applied] == [m.version for m in migrations.discover_migrations()]
    assert migrations.upgrade(empty_database_url) == []
