"""Waiting for what the collaboration engine does on its own (its NOTIFY wakes the engine, not the test)."""

from __future__ import annotations

import time
from collections.abc import Callable


def until[T](probe: Callable[[], T | None], what: str, seconds: float = 120) -> T:
    """Poll the API until `probe` returns something truthy; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
