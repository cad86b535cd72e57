"""Health of a running release: its HTTP answer, its process, and recent error lines in its log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

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
