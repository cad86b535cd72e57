"""Killing the orchestrator service at a precise point of a run: the moment its event stream shows
what the test waits for (NOTIFY wakes the watcher; no polling, no sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from agent_orchestrator.runs.models import RunEvent
from agent_orchestrator.runs.queue import EVENTS_CHANNEL
from agent_orchestrator.runs.runtime import RunsRuntime
from support.tests.workflows.flagship_platform import Platform


async def kill_orchestrator_when(
    runtime: RunsRuntime, run_id: UUID, platform: Platform, matches: Callable[[RunEvent], bool], what: str
) -> None:
    """SIGKILL the platform's orchestrator at the first event of the run that `matches`."""
    await wait_for_run_event(runtime, run_id, matches, what)
    platform.orchestrator.kill()


async def wait_for_run_event(
    runtime: RunsRuntime, run_id: UUID, matches: Callable[[RunEvent], bool], what: str
) -> RunEvent:
    """The first event of the run that `matches` (woken by the events' NOTIFY, no polling)."""
    sub = runtime.listener.subscribe(EVENTS_CHANNEL, key=str(run_id))
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while time.monotonic() < deadline:
            for event in await runtime.queue.events_after(run_id, seen):
                seen = event.id
                if matches(event):
                    return event
                assert event.kind not in ("failed", "succeeded"), f"run ended before {what}: {event}"
            await sub.wait(deadline - time.monotonic())
        raise AssertionError(f"{what} did not happen in time")
    finally:
        sub.close()
