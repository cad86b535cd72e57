"""`devtools locks list|status|force-release` as a real process against the test database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


def _devtools(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", "locks", *args],
        cwd=REPO_ROOT,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_list_status_and_force_release(database_url: str, service_env: dict[str, str]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        token = conn.execute(
            "SELECT fencing_token FROM acquire_resource_lock('env:cli', 'deployer-7', 300, 'exclusive', 'v2')"
        ).fetchone()[0]  # type: ignore[index]
    listed = _devtools(service_env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "env:cli" in listed.stdout and "deployer-7" in listed.stdout and str(token) in listed.stdout
    shown = _devtools(service_env, "status", "env:cli")
    assert shown.returncode == 0 and "held exclusive by deployer-7" in shown.stdout

    refused = _devtools(service_env, "force-release", "env:cli", "--reason", "")
    assert refused.returncode == 2 and "invalid reason" in refused.stderr
    released = _devtools(
        service_env, "force-release", "env:cli", "--reason", "stuck deploy", "--admin", "ops"
    )
    assert released.returncode == 0 and "previous holders: deployer-7" in released.stdout
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT owner, reason, metadata->>'admin' FROM lock_history WHERE action = 'force_release'"
        ).fetchone()
    assert row == ("deployer-7", "stuck deploy", "ops")
    assert "free" in _devtools(service_env, "status", "env:cli").stdout
