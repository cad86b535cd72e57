"""Health of a running release: its HTTP answer, its process, and recent error lines in its log;
`health_report` puts them together for an environment's current release."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.infrastructure.contract import HealthReport
from services.infrastructure.env_state import EnvironmentDir, EnvironmentState
from services.infrastructure.supervisor import is_alive, supervisor_status
from shared.process import log_tail

_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL|Traceback|Exception|panic)\b", re.IGNORECASE)
PROBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class HttpProbe:
    url: str
    status: int | None  # None when nothing answered
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400


def app_url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def probe_http(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> HttpProbe:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return HttpProbe(url, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return HttpProbe(url, response.status_code, None)


def wait_until_healthy(url: str, timeout: float, alive: Callable[[], bool]) -> tuple[HttpProbe, str | None]:
    """Poll the URL until it answers 2xx/3xx or `timeout` passes; stops early when the process died.

    Returns the last probe and, on failure, the reason in words.
    """
    deadline = time.monotonic() + timeout
    probe = HttpProbe(url, None, "not probed")
    while True:
        probe = probe_http(url, timeout=min(PROBE_TIMEOUT_SECONDS, max(0.1, deadline - time.monotonic())))
        if probe.ok:
            return probe, None
        if not alive():
            return probe, "the app's process exited before it became healthy"
        if time.monotonic() >= deadline:
            answer = f"HTTP {probe.status}" if probe.status is not None else probe.error
            return probe, f"no healthy answer from {url} within {timeout:g}s (last: {answer})"
        time.sleep(0.1)  # an external process's readiness has no event to await: poll against a deadline


def recent_error_lines(log_path: Path, max_lines: int = 20) -> list[str]:
    lines = log_tail(log_path, max_lines=400).splitlines()
    return [line for line in lines if _ERROR_LINE.search(line)][-max_lines:]


def health_report(env: EnvironmentDir, state: EnvironmentState, reason: str | None = None) -> HealthReport:
    """What the environment's current release is doing now: status up, degraded, down or not_deployed."""
    info = env.release_info(state.current_release) if state.current_release else None
    running = state.process
    alive = running is not None and is_alive(running)
    url = app_url(info.port, info.health_path) if info else None
    probe = probe_http(url) if url and alive else None
    supervised = supervisor_status(env.release_dir(info.release_id)) if info and running else None
    restarts = supervised.restarts if supervised else 0
    if info is None:
        status, reason = "not_deployed", reason or "nothing is deployed"
    elif not alive:
        status = "down"
        gone = "the app's process is gone"
        if supervised and supervised.gave_up:
            gone += f" (its supervisor restarted it {restarts} time(s), then gave up)"
        reason = reason or ("stopped by request" if state.stopped_by_request else gone)
    elif probe is not None and probe.ok:
        status = "up"
    else:
        status = "degraded"
        answer = f"HTTP {probe.status}" if probe and probe.status is not None else (probe and probe.error)
        reason = reason or f"process alive but health check failed ({answer})"
    log_path = env.release_dir(info.release_id) / "app.log" if info else None
    return HealthReport(
        environment=env.name,
        status=status,
        healthy=status == "up",
        release_id=info.release_id if info else None,
        url=url,
        http_status=probe.status if probe else None,
        http_error=probe.error if probe else None,
        process_alive=alive,
        pid=running.pid if running and alive else None,
        port=info.port if info else None,
        error_lines=recent_error_lines(log_path) if log_path else [],
        reason=None if status == "up" else reason,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        restarts=restarts,
    )
