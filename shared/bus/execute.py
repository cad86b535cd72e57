"""Running a request handler: bounded by the request's expiry, every outcome turned into a response."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shared.bus.errors import classify
from shared.bus.events import AgentRequestEvent, AgentResponseEvent, ResponseStatus

log = logging.getLogger(__name__)

# A handler returns a result dict (-> success), None (-> success without result) or a full response.
RequestHandler = Callable[[AgentRequestEvent], Awaitable[AgentResponseEvent | dict[str, Any] | None]]


async def run_handler(
    handler: RequestHandler, request: AgentRequestEvent, agent_id: str
) -> AgentResponseEvent:
    started = time.perf_counter()

    def elapsed_ms() -> float:
        return (time.perf_counter() - started) * 1000

    def answer(status: ResponseStatus, **fields: Any) -> AgentResponseEvent:
        return AgentResponseEvent.for_request(
            request, agent_id, status, processing_time_ms=elapsed_ms(), **fields
        )

    try:
        outcome = await asyncio.wait_for(handler(request), max(request.seconds_left(), 0.001))
    except TimeoutError:
        return answer(ResponseStatus.TIMEOUT, error="handler ran past expires_at")
    except Exception as exc:
        # A handler failure is an answer, not a delivery failure: the request is not retried.
        log.exception("bus: request handler failed", extra={"request_id": request.request_id})
        info = classify(exc)
        return answer(
            ResponseStatus.ERROR,
            error=f"{type(exc).__name__}: {exc}",
            error_code=info.code,
            error_class=info.error_class,
            retry_after_seconds=info.retry_after_seconds,
        )
    if isinstance(outcome, AgentResponseEvent):
        # Whatever the handler filled in, the answer must reach this request's requester.
        return outcome.model_copy(
            update={
                "request_id": request.request_id,
                "target_agent": request.source_agent,
                "processing_time_ms": outcome.processing_time_ms or elapsed_ms(),
            }
        )
    return answer(ResponseStatus.SUCCESS, result=outcome)
