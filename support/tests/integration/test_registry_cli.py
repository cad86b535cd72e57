"""`devtools up` and `devtools agents` as real processes: start, ready, list, clean stop on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent_orchestrator.services import SERVICES, available_services
from support.tests.agents.processes import PLATFORM_TOKEN, REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.integration


def test_service_table_lists_the_registry_first_and_only_runnable_rows() -> None:
    assert SERVICES[0].module == "services.agent_registry"
    found = available_services()
    assert found[0].name == "agent-registry"
    fake = (SERVICES[0].__class__("ghost", "services.no_such_agent", "cicd_port", "ghost"),)
    assert available_services(fake) == []


def test_up_starts_waits_lists_and_stops_cleanly(service_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {
        **service_env,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_REGISTRY_PORT": str(port),
        "DEVTOOLS_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    out = tmp_path / "up.out"
    with out.open("wb") as handle:
        up = subprocess.Popen(
            [sys.executable, "-m", "agent_orchestrator", "up", "--only", "agent-registry"],
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "services ready" in out.read_text(), deadline_s=90, what="devtools up ready")
        assert httpx.get(f"{url}/health").json()["status"] == "healthy"
        registered = httpx.post(
            f"{url}/register",
            headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
            json={
                "agent_id": "cli-probe",
                "agent_name": "probe",
                "base_url": "http://127.0.0.1:1",
                "capabilities": ["probing"],
                "capacity": 3,
            },
        )
        assert registered.status_code == 201
        listed = subprocess.run(
            [sys.executable, "-m", "agent_orchestrator", "agents", "--capability", "probing"],
            cwd=REPO_ROOT,
            env={**env, "DEVTOOLS_REGISTRY_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "cli-probe" in listed.stdout and "0/3" in listed.stdout and "probing" in listed.stdout
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
    text = out.read_text()
    assert code == 0, text
    assert "stopped 1 services (exit codes [0])" in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)


def test_up_rejects_unknown_service_name(service_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", "up", "--only", "nonsense"],
        cwd=REPO_ROOT,
        env={**service_env, "DEVTOOLS_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "nonsense" in result.stderr and "agent-registry" in result.stderr


def test_agents_reports_an_unreachable_registry(service_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", "agents"],
        cwd=REPO_ROOT,
        env={**service_env, "DEVTOOLS_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "unreachable" in result.stderr
