"""A test agent built with the runtime, run as a real process: `python -m support.tests.agents.echo_agent`.

ECHO answers with its payload; FAIL raises (`kind`: a crash, or a permanent or retryable
AgentError with a code and a Retry-After); RUN runs a shell command like cicd does (its process
group is killed when the request's task is cancelled or times out); WAIT blocks until the test
releases it through Redis (so a test can hold a request in flight, then SIGTERM or kill the process).

In threads it answers every message with `echo: <body>` (recording each time it acted, in Redis); a
message `hold <gate>` is held like WAIT first. ECHO_AGENT_ID names it otherwise (two echo agents of
different ids share the `echo` capability); ECHO_DECLINE_HANDOFFS=1 makes it decline every handoff.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from shared.agents import (
    AgentDefinition,
    Capability,
    PermanentAgentError,
    RequestContext,
    RetryableAgentError,
    run_agent,
)
from shared.agents.collaboration import (
    COLLAB_MESSAGE,
    HANDOFF_OFFER,
    HandoffOffer,
    IncomingMessage,
    decide_offer,
)
from shared.process import clean_environment, run_command

agent = AgentDefinition(
    agent_id=os.environ.get("ECHO_AGENT_ID", "echo"),
    name="Echo test agent",
    capabilities=[Capability("echo", "Repeats what it is sent"), Capability("wait", "Holds a request")],
    capacity=2,
    tags=["test"],
)


class EchoPayload(BaseModel):
    text: str = Field(min_length=1)
    repeat: int = Field(1, ge=1, le=10)


class WaitPayload(BaseModel):
    gate: str = Field(min_length=1)
    max_wait_seconds: float = Field(60, gt=0)


class RunPayload(BaseModel):
    command: str = Field(min_length=1)
    timeout_seconds: float = Field(300, gt=0)


@agent.handler("ECHO", payload_model=EchoPayload)
async def echo(payload: EchoPayload, ctx: RequestContext) -> dict[str, Any]:
    return {"text": payload.text * payload.repeat, "via": ctx.via, "replica": ctx.resources["replica_id"]}


@agent.handler("FAIL")
async def fail(payload: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    message = f"asked to fail: {payload.get('reason', 'no reason')}"
    if payload.get("kind") == "permanent":
        raise PermanentAgentError(message, code="broken_repository")
    if payload.get("kind") == "retryable":
        raise RetryableAgentError(message, code="rate_limited", retry_after_seconds=7)
    raise RuntimeError(message)


@agent.handler("RUN", payload_model=RunPayload)
async def run(payload: RunPayload, ctx: RequestContext) -> dict[str, Any]:
    folder = Path(ctx.resources["settings"].data_dir) / "echo-run"
    folder.mkdir(parents=True, exist_ok=True)
    outcome = await asyncio.to_thread(
        run_command,
        payload.command,
        cwd=folder,
        log_path=folder / f"{ctx.request.request_id}.log",
        timeout=payload.timeout_seconds,
        env=clean_environment(folder),
    )
    return {"exit_code": outcome.exit_code, "timed_out": outcome.timed_out}


def _keys(ctx: RequestContext, gate: str) -> tuple[str, str]:
    prefix = ctx.resources["settings"].redis_prefix
    return f"{prefix}:test:started:{gate}", f"{prefix}:test:release:{gate}"


@agent.handler("WAIT", payload_model=WaitPayload)
async def wait(payload: WaitPayload, ctx: RequestContext) -> dict[str, Any]:
    started, release = _keys(ctx, payload.gate)
    active = f"{ctx.resources['settings'].redis_prefix}:test:active:{ctx.resources['replica_id']}"
    client = aioredis.Redis.from_url(ctx.resources["settings"].redis_url, decode_responses=True)
    try:
        # How many WAITs this replica holds at once, as each one starts: tests check the recorded
        # concurrency never passes its capacity.
        now_active = await client.incr(active)
        await client.rpush(f"{active}:seen", now_active)
        await client.rpush(started, ctx.resources["replica_id"])
        try:
            released = await client.blpop([release], timeout=payload.max_wait_seconds)
        finally:
            await client.decr(active)
    finally:
        await client.aclose()
    return {"released": released is not None, "replica": ctx.resources["replica_id"], "via": ctx.via}


@agent.handler(COLLAB_MESSAGE, payload_model=IncomingMessage)
async def answer(message: IncomingMessage, ctx: RequestContext) -> dict[str, Any]:
    settings = ctx.resources["settings"]
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        if message.body.startswith("hold "):
            started, release = _keys(ctx, message.body.split(" ", 1)[1])
            await client.rpush(started, ctx.resources["replica_id"])
            await client.blpop([release], timeout=60)
        await client.rpush(
            f"{settings.redis_prefix}:test:acted:{message.message_id}", ctx.resources["replica_id"]
        )
    finally:
        await client.aclose()
    return {"reply": {"kind": "answer", "body": f"echo: {message.body}"}}


@agent.handler(HANDOFF_OFFER, payload_model=HandoffOffer)
async def consider(offer: HandoffOffer, ctx: RequestContext) -> dict[str, Any]:
    if os.environ.get("ECHO_DECLINE_HANDOFFS") == "1":
        return {"accept": False, "reason": f"{agent.agent_id} declines every handoff"}
    return await decide_offer(offer, ctx)


if __name__ == "__main__":
    run_agent(agent)
