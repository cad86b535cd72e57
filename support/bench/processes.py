"""Real service processes, for tests and benchmarks: free ports, start, wait for /health, stop.

Shared by `support/tests` (re-exported by `support/tests/agents/processes.py`) and the
benchmarks, which must not import test modules.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_TOKEN = "test-platform-token"
# The registry's admin token: changes any agent's record (the platform token changes none).
REGISTRY_ADMIN_TOKEN = "test-registry-admin-token"
# What a caller of an agent's POST /agent-request presents (the platform token).
AGENT_AUTH = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}


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
        "DEVTOOLS_REGISTRY_ADMIN_TOKEN": REGISTRY_ADMIN_TOKEN,
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


def registry_record(registry: ServiceProcess, agent_id: str) -> dict | None:  # type: ignore[type-arg]
    response = httpx.get(f"{registry.url}/agents/{agent_id}", timeout=5)
    return response.json() if response.status_code == 200 else None
