"""The requests an agent is executing now, so that their requester's cancel reaches them.

`RunningRequests.run(request, token, work)` executes `work` (a coroutine) as its own task, tracked by
the request's id until it ends. `cancel(request_id, reason)` (called by the bus's cancel watcher,
shared/bus/cancels.py) sets the request's cancel token, which kills a command's process group
(shared/process.py), and cancels the task, which frees the slot at once; the request is then
answered `cancelled`. Cancelling the agent's own task (shutdown) still propagates as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from shared.agents.task_lease import task_error
from shared.bus import AgentRequestEvent, AgentResponseEvent, ErrorClass
from shared.cancellation import CancelToken, cancel_scope

log = logging.getLogger(__name__)


class RunningRequests:
    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self._running: dict[str, tuple[CancelToken, asyncio.Future[AgentResponseEvent]]] = {}

    def ids(self) -> list[str]:
        return list(self._running)

    async def run(
        self,
        request: AgentRequestEvent,
        token: CancelToken,
        work: Coroutine[Any, Any, AgentResponseEvent],
    ) -> AgentResponseEvent:
        with cancel_scope(token):  # the task (and the threads it starts) run with this token
            task = asyncio.ensure_future(work)
        self._running[request.request_id] = (token, task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if token.cancelled and task.cancelled() and not (current and current.cancelling()):
                return task_error(request, self.agent_id, token.reason, "cancelled", ErrorClass.PERMANENT)
            raise
        finally:
            self._running.pop(request.request_id, None)

    def cancel(self, request_id: str, reason: str) -> None:
        running = self._running.get(request_id)
        if running is None:
            return
        token, task = running
        if not token.cancelled:
            log.info("request cancelled by its requester", extra={"request_id": request_id, "reason": reason})
            token.cancel(f"cancelled by the requester: {reason}")
            task.cancel()
