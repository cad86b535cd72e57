"""Marks agents offline after missed heartbeats and announces it on the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

from services.agent_registry.events import RegistryEvents
from services.agent_registry.store import RegistryStore

log = logging.getLogger(__name__)

AGENTS_SWEPT = Counter("devtools_registry_agents_swept_total", "Agents marked offline by the sweeper")


class Sweeper:
    def __init__(
        self, store: RegistryStore, events: RegistryEvents, *, interval: float, missed_heartbeats: int
    ) -> None:
        self.store = store
        self.events = events
        self.interval = interval
        self.missed = missed_heartbeats
        self._task: asyncio.Task[None] | None = None
        self.last_sweep_ok = True

    async def sweep_once(self) -> list[str]:
        rows = await self.store.sweep(self.missed)
        for row in rows:
            AGENTS_SWEPT.inc()
            log.info("agent offline: missed heartbeats", extra={"agent_id": row["agent_id"]})
            await self.events.status_changed(
                row["agent_id"], row["previous_status"], "offline", reason="missed_heartbeats"
            )
        return [r["agent_id"] for r in rows]

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
                self.last_sweep_ok = True
            except Exception as exc:  # keep sweeping after a database blip
                self.last_sweep_ok = False
                log.warning("sweep failed", extra={"error": str(exc)})
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
