"""`devtools up` and `devtools agents` as real processes: start, ready, list, clean stop on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_orchestrator.stack import (
    SERVICES,
    RunningService,
    ServiceSpec,
    Supervisor,
    available_services,
)
from shared.backends import Backends
from shared.config import load_settings
from support.tests.agents.processes import (
    ADMIN_AUTH,
    PLATFORM_TOKEN,
    REPO_ROOT,
    ServiceProcess,
    free_port,
    registry_record,
    start_echo_agent,
    wait_until,
)

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


def _put_record(registry: ServiceProcess, base_url: str, interval: float, **metadata: Any) -> None:
    """Write the `echo` record as an earlier run of the agent would have left it."""
    response = httpx.post(
        f"{registry.url}/register",
        headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
        json={
            "agent_id": "echo",
            "agent_name": "left over",
            "base_url": base_url,
            "capabilities": ["echo"],
            "metadata": metadata,
            "heartbeat_interval_seconds": interval,
        },
    )
    assert response.status_code in (200, 201), response.text


def _supervising(registry: ServiceProcess, agent: ServiceProcess) -> tuple[Supervisor, RunningService]:
    spec = ServiceSpec("echo", "support.tests.agents.echo_agent", "cicd_port", "echo")
    supervisor = Supervisor(
        load_settings(registry_url=registry.url),
        Backends("", "", False, False),
        [spec],
        agent.log_path.parent,
    )
    svc = RunningService(spec, agent.url, agent.process, agent.log_path)
    supervisor.running.append(svc)
    return supervisor, svc


def test_up_does_not_count_a_leftover_record_as_registered(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> None:
    # A healthy agent process that does not register: the registry only holds what the test writes.
    agent = start_echo_agent(module_env, registry, log_dir, DEVTOOLS_AGENT_REGISTRATION="false")
    try:
        supervisor, svc = _supervising(registry, agent)
        own_pid = agent.process.pid

        # Left by an earlier unclean run and swept offline (even with this very pid).
        _put_record(registry, agent.url, 0.1, pid=own_pid)
        wait_until(lambda: registry_record(registry, "echo")["status"] == "offline", what="swept offline")
        supervisor.refresh()
        assert svc.healthy and not svc.registered and not svc.ready

        # Left by an earlier run and not swept yet: live, but another process's record.
        _put_record(registry, agent.url, 3600, pid=own_pid + 100_000)
        supervisor.refresh()
        assert svc.healthy and not svc.registered

        # Without a pid, the record's age decides: older than the process does not count.
        _put_record(registry, agent.url, 3600)
        svc.started_at = datetime.now(UTC) + timedelta(hours=1)
        supervisor.refresh()
        assert not svc.registered
        svc.started_at = datetime.now(UTC) - timedelta(minutes=1)
        supervisor.refresh()
        assert svc.registered

        _put_record(registry, agent.url, 3600, pid=own_pid)
        supervisor.refresh()
        assert svc.registered and svc.ready
    finally:
        agent.terminate()
        httpx.delete(f"{registry.url}/agents/echo", headers=ADMIN_AUTH)


def test_up_counts_an_agent_registered_by_the_runtime(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> None:
    agent = start_echo_agent(module_env, registry, log_dir)
    try:
        supervisor, svc = _supervising(registry, agent)
        wait_until(lambda: registry_record(registry, "echo"), what="echo registered")
        assert registry_record(registry, "echo")["metadata"]["pid"] == agent.process.pid
        supervisor.refresh()
        assert svc.ready
    finally:
        agent.terminate()
