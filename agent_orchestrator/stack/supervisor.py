"""The supervisor behind `devtools up`, `devtools run` and the demo: starts the services of
`agent_orchestrator.stack.catalog` as child processes, waits until each is healthy and registered,
and stops them."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from agent_orchestrator.stack.catalog import ServiceSpec
from shared.backends import Backends
from shared.config import Settings


@dataclass
class RunningService:
    spec: ServiceSpec
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    healthy: bool = False
    registered: bool = False
    status: str = "starting"
    detail: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ready(self) -> bool:
        return self.healthy and (self.spec.agent_id is None or self.registered)


# Allowance for the registry's database clock running behind ours (fallback check only).
CLOCK_SKEW = timedelta(seconds=5)


def registered_by(record: dict[str, Any], svc: RunningService) -> bool:
    """Whether a registry record shows `svc` itself registered, not a leftover of an earlier run.

    An unclean stop leaves the old record behind: `offline` once swept, still live until then.
    The agent runtime records its pid in the metadata; without one, the record must be newer
    than the process.
    """
    if record.get("status", "offline") == "offline":
        return False
    pid = (record.get("metadata") or {}).get("pid")
    if pid is not None:
        return bool(pid == svc.process.pid)
    try:
        registered_at = datetime.fromisoformat(str(record["registered_at"]))
    except (KeyError, ValueError):
        return False
    return registered_at >= svc.started_at - CLOCK_SKEW


@dataclass
class Supervisor:
    settings: Settings
    backends: Backends
    specs: list[ServiceSpec]
    log_dir: Path
    running: list[RunningService] = field(default_factory=list)
    generated_token: bool = False

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.backends.env()}
        token = self.settings.api_token_value()
        if not token:
            # Security by default: the services always require a token; without a configured one,
            # this session gets a random one that only its own children know.
            token = secrets.token_urlsafe(24)
            self.generated_token = True
        env["DEVTOOLS_API_TOKEN"] = token
        env["DEVTOOLS_REGISTRY_URL"] = self.settings.resolved_registry_url
        env.setdefault("DEVTOOLS_LOG_FORMAT", "json")
        return env

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self._env()
        for spec in self.specs:
            port = int(getattr(self.settings, spec.port_setting))
            log_path = self.log_dir / f"{spec.name}.log"
            with log_path.open("ab") as handle:
                process = subprocess.Popen(
                    [sys.executable, "-m", spec.module],
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                )
            url = f"http://{self.settings.host}:{port}"
            self.running.append(RunningService(spec, url, process, log_path))

    def refresh(self) -> None:
        registry_url = self.settings.resolved_registry_url
        with httpx.Client(timeout=2) as client:
            for svc in self.running:
                code = svc.process.poll()
                if code is not None:
                    svc.healthy, svc.registered, svc.status = False, False, f"exited ({code})"
                    svc.detail = f"see {svc.log_path}"
                    continue
                try:
                    response = client.get(f"{svc.url}/health")
                    svc.healthy = response.status_code == 200
                    svc.status = str(response.json().get("state") or response.json().get("status"))
                except (httpx.HTTPError, ValueError):
                    svc.healthy, svc.status = False, "starting"
                if svc.spec.agent_id is not None:
                    try:
                        record = client.get(f"{registry_url}/agents/{svc.spec.agent_id}")
                        svc.registered = record.status_code == 200 and registered_by(record.json(), svc)
                    except (httpx.HTTPError, ValueError):
                        svc.registered = False

    def wait_ready(self, timeout: float) -> bool:
        """Poll health and registration (external processes) until all are ready or one exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.refresh()
            if all(s.ready for s in self.running):
                return True
            if any(s.process.poll() is not None for s in self.running):
                return False
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 30) -> list[int | None]:
        """SIGTERM agents first (they drain and deregister), then the registry; kill what lingers."""
        agents = [s for s in self.running if s.spec.agent_id is not None]
        others = [s for s in self.running if s.spec.agent_id is None]
        for group in (agents, others):
            for svc in group:
                if svc.process.poll() is None:
                    svc.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for svc in group:
                try:
                    svc.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    svc.process.kill()
                    svc.process.wait(timeout=10)
        return [s.process.returncode for s in self.running]

    def table(self, title: str = "devtools services") -> Table:
        table = Table(title=title)
        for column in ("service", "pid", "url", "health", "registered", "state"):
            table.add_column(column)
        for svc in self.running:
            health = "[green]healthy[/green]" if svc.healthy else f"[red]down[/red] {svc.detail}"
            registered = "-" if svc.spec.agent_id is None else ("yes" if svc.registered else "[yellow]no[/]")
            table.add_row(svc.spec.name, str(svc.process.pid), svc.url, health, registered, svc.status)
        return table
