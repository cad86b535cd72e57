import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis

from shared.backends import resolve_backends
from shared.config import load_settings
from shared.embedded import embedded_servers

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    directory = tmp_path / "data"
    yield directory
    pg, rd = embedded_servers(directory)
    pg.stop()
    rd.stop()


def test_embedded_servers_start_persist_and_stop(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVTOOLS_DATABASE_URL", raising=False)
    monkeypatch.delenv("DEVTOOLS_REDIS_URL", raising=False)
    settings = load_settings(data_dir=data_dir)
    backends = resolve_backends(settings)
    assert backends.embedded_postgres and backends.embedded_redis

    with psycopg.connect(backends.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('across restarts')")
    client = redis.Redis.from_url(backends.redis_url)
    client.set("kept", "across restarts")
    client.close()

    # A second resolve reuses the running servers rather than starting new ones.
    assert resolve_backends(settings) == backends

    pg, rd = embedded_servers(data_dir)
    assert pg.stop() and rd.stop()
    assert not pg.is_running() and not rd.is_running()

    again = resolve_backends(settings)
    with psycopg.connect(again.database_url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == ("across restarts",)
    client = redis.Redis.from_url(again.redis_url)
    assert client.get("kept") == b"across restarts"
    client.close()


def test_configured_urls_never_start_embedded(tmp_path: Path, database_url: str, redis_url: str) -> None:
    data_dir = tmp_path / "never"
    settings = load_settings(database_url=database_url, redis_url=redis_url, data_dir=data_dir)
    backends = resolve_backends(settings)
    assert (backends.database_url, backends.redis_url) == (database_url, redis_url)
    assert not backends.embedded_postgres and not backends.embedded_redis
    assert not (data_dir / "embedded").exists()


def _devtools(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_db_upgrade_status_and_doctor(empty_database_url: str, service_env: dict[str, str]) -> None:
    env = {**service_env, "DEVTOOLS_DATABASE_URL": empty_database_url, "COLUMNS": "200"}
    first = _devtools("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 001_foundation.sql" in first.stdout
    second = _devtools("db", "upgrade", env=env)
    assert second.returncode == 0 and "(0 applied now)" in second.stdout
    status = _devtools("db", "status", env=env)
    assert status.returncode == 0 and "0 pending" in status.stdout
    doctor = _devtools("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "postgresql: configured; redis: configured" in doctor.stdout


def test_doctor_fails_clearly_when_redis_is_unreachable(
    database_url: str, service_env: dict[str, str]
) -> None:
    env = {**service_env, "DEVTOOLS_REDIS_URL": "redis://127.0.0.1:1/0", "COLUMNS": "200"}
    result = _devtools("doctor", env=env)
    assert result.returncode == 1
    assert "down" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when we are root")
def test_embedded_postgres_stops_even_when_its_user_cannot_enter_the_parent_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = Path(tempfile.mkdtemp(prefix="devtools-embedded-"))
    os.chmod(parent, 0o755)
    pg, rd = embedded_servers(parent / "data")
    try:
        monkeypatch.delenv("DEVTOOLS_DATABASE_URL", raising=False)
        pg.ensure_running()
        assert pg.is_running()
        os.chmod(parent, 0o700)  # what a test runner resetting its temp root does meanwhile
        assert pg.stop() is True
        assert not pg.is_running()
    finally:
        os.chmod(parent, 0o755)
        pg.stop()
        rd.stop()
        shutil.rmtree(parent, ignore_errors=True)
