"""Real service processes for tests: free ports, start, wait for /health with a deadline, stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]
PLATFORM_TOKEN = "test-platform-token"
# What a caller of an agent's POST /agent-request presents (the platform token).
AGENT_AUTH = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def start_service(
    name: str, module: str, env: dict[str, str], port: int, log_dir: Path, args: list[str] | None = None
) -> ServiceProcess:
    log_path = log_dir / f"{name}.log"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", module, *(args or [])],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    service = ServiceProcess(name, f"http://127.0.0.1:{port}", process, log_path)
    wait_healthy(service)
    return service


def wait_healthy(service: ServiceProcess, deadline_s: float = 60) -> None:
    # Polling an external process's /health: there is no event to await across processes.
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited {service.process.returncode}:\n{service.log_text()}")
        try:
            if httpx.get(f"{service.url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    service.kill()
    raise TimeoutError(f"{service.name} not healthy in {deadline_s}s:\n{service.log_text()}")


def wait_until(predicate, deadline_s: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll an external process's observable state until predicate() is truthy."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def registry_env(service_env: dict[str, str], port: int, **extra: str) -> dict[str, str]:
    return {
        **service_env,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_REGISTRY_PORT": str(port),
        "DEVTOOLS_REGISTRY_URL": f"http://127.0.0.1:{port}",
        "DEVTOOLS_REGISTRY_SWEEP_INTERVAL_SECONDS": "0.2",
        "DEVTOOLS_DB_POOL_MAX": "4",
        **extra,
    }


@contextmanager
def running_registry(service_env: dict[str, str], log_dir: Path, **extra: str) -> Iterator[ServiceProcess]:
    port = free_port()
    service = start_service(
        "registry", "services.agent_registry", registry_env(service_env, port, **extra), port, log_dir
    )
    try:
        yield service
    finally:
        service.terminate()


def env_without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def start_echo_agent(
    env: dict[str, str], registry: ServiceProcess, log_dir: Path, *, replica: str | None = None, **extra: str
) -> ServiceProcess:
    """The echo test agent as a real process, registered with `registry`, heartbeating every 0.3 s."""
    port = free_port()
    agent_env = {
        **env,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_REGISTRY_URL": registry.url,
        "DEVTOOLS_AGENT_PORT": str(port),
        "DEVTOOLS_AGENT_HEARTBEAT_INTERVAL_SECONDS": "0.3",
        "DEVTOOLS_AGENT_CLAIM_IDLE_MS": "1000",
        **({"DEVTOOLS_AGENT_REPLICA": replica} if replica else {}),
        **extra,
    }
    name = f"echo-{replica or 'main'}-{port}"
    return start_service(name, "support.tests.agents.echo_agent", agent_env, port, log_dir)


def registry_record(registry: ServiceProcess, agent_id: str) -> dict | None:  # type: ignore[type-arg]
    response = httpx.get(f"{registry.url}/agents/{agent_id}", timeout=5)
    return response.json() if response.status_code == 200 else None


@contextmanager
def running_agent(
    agent_id: str,
    module: str,
    port_variable: str,
    module_env: dict[str, str],
    registry: ServiceProcess,
    log_dir: Path,
    **extra_env: str,
) -> Iterator[ServiceProcess]:
    """One agent service as a real process, registered with `registry`; terminated on exit."""
    port = free_port()
    env = {
        **module_env,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_REGISTRY_URL": registry.url,
        port_variable: str(port),
        "DEVTOOLS_LLM": "none",
        **extra_env,
    }
    service = start_service(agent_id, module, env, port, log_dir)
    try:
        wait_until(lambda: registry_record(registry, agent_id), what=f"{agent_id} registered")
        yield service
    finally:
        service.terminate()


def agent_request_body(
    target_agent: str, request_type: str, payload: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The JSON of an AgentRequestEvent as a test client sends it to POST /agent-request."""
    return {
        "source_agent": "tests",
        "target_agent": target_agent,
        "request_type": request_type,
        "payload": payload,
        **extra,
    }
