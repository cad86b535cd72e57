"""HTTP endpoints of durable runs: queue, inspect, cancel, follow (SSE), approve/reject,
history and replay. Mounted on the orchestrator's app (see `api.app`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from agent_orchestrator.api.auth import caller_identity
from agent_orchestrator.runs import metrics
from agent_orchestrator.runs.checkpointing import run_config, saver_for_run
from agent_orchestrator.runs.jsonable import jsonable
from agent_orchestrator.runs.models import Run, RunStatus
from agent_orchestrator.runs.queue import EVENTS_CHANNEL
from agent_orchestrator.runs.replay import CheckpointNotFound, fork_run
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.workflow_table import UnknownWorkflow
from shared.config import Settings
from shared.http import error_body, validation_fields

router = APIRouter(tags=["runs"])

SSE_KEEPALIVE_SECONDS = 15.0


def runtime_of(request: Request) -> RunsRuntime:
    return request.app.state.runs_runtime  # type: ignore[no-any-return]


def writer(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return caller_identity(request, settings)


Runtime = Annotated[RunsRuntime, Depends(runtime_of)]
Writer = Annotated[str, Depends(writer)]


class CreateRun(BaseModel):
    workflow: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000)
    not_before: datetime | None = None


class Decision(BaseModel):
    comment: str | None = Field(None, max_length=4000)


class ReplayRequest(BaseModel):
    checkpoint_id: str = Field(min_length=1, max_length=200)


async def _run_or_404(rt: RunsRuntime, run_id: UUID) -> Run:
    run = await rt.queue.get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return run


@router.post("/runs", status_code=201)
async def create_run(body: CreateRun, rt: Runtime, who: Writer) -> Run:
    try:
        spec = rt.workflows.get(body.workflow)
    except UnknownWorkflow as exc:
        raise HTTPException(404, error_body(str(exc), field="workflow")) from None
    try:
        # Input checks may look at the local disk and run git (a repository path): off the loop.
        parsed = await asyncio.to_thread(spec.input_model.model_validate, body.input)
    except ValidationError as exc:
        fields = [{**f, "field": f"input.{f['field']}"} for f in validation_fields(exc.errors())]
        names = ", ".join(f["field"] for f in fields)
        message = f"invalid input for {spec.name}: {names}"
        raise HTTPException(422, error_body(message, fields=fields)) from None
    run = await rt.queue.enqueue(
        spec.name,
        parsed.model_dump(mode="json"),
        priority=body.priority,
        not_before=body.not_before,
        created_by=who,
        max_attempts=spec.max_attempts,
    )
    metrics.RUNS_ENQUEUED.labels(spec.name).inc()
    return run


@router.get("/runs")
async def list_runs(
    rt: Runtime,
    status: RunStatus | None = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Run]:
    return await rt.queue.list_runs(status=status, workflow=workflow, limit=limit, offset=offset)


@router.get("/runs/{run_id}")
async def get_run(run_id: UUID, rt: Runtime) -> Run:
    return await _run_or_404(rt, run_id)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: UUID, rt: Runtime, who: Writer) -> Run:
    run = await rt.queue.cancel(run_id, who)
    if run is None:
        existing = await _run_or_404(rt, run_id)
        raise HTTPException(409, f"run {run_id} is already {existing.status.value}")
    return run


@router.get("/approvals")
async def list_approvals(
    rt: Runtime, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    runs = await rt.queue.list_runs(status=RunStatus.INTERRUPTED, limit=limit)
    return [
        {
            "run_id": str(r.id),
            "workflow": r.workflow,
            "interrupt": r.interrupt,
            "created_by": r.created_by,
            "waiting_since": r.updated_at.isoformat(),
        }
        for r in runs
    ]


async def _decide(rt: RunsRuntime, run_id: UUID, approved: bool, who: str, body: Decision) -> Run:
    decision = {"approved": approved, "approver": who, "comment": body.comment}
    run = await rt.queue.resume(run_id, decision, who)
    if run is None:
        existing = await _run_or_404(rt, run_id)
        raise HTTPException(409, f"run {run_id} is {existing.status.value}, not waiting for approval")
    return run


@router.post("/runs/{run_id}/approve")
async def approve_run(run_id: UUID, rt: Runtime, who: Writer, body: Decision | None = None) -> Run:
    return await _decide(rt, run_id, True, who, body or Decision())


@router.post("/runs/{run_id}/reject")
async def reject_run(run_id: UUID, rt: Runtime, who: Writer, body: Decision | None = None) -> Run:
    return await _decide(rt, run_id, False, who, body or Decision())


@router.get("/runs/{run_id}/history")
async def run_history(
    run_id: UUID,
    rt: Runtime,
    values: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The run's checkpoints, newest first (ids to replay from)."""
    run = await _run_or_404(rt, run_id)
    saver = saver_for_run(rt.checkpoint_pool)
    config = run_config(str(run.id))
    entries: list[dict[str, Any]] = []
    if run.workflow in rt.workflows:
        graph = rt.workflows.get(run.workflow).graph().compile(checkpointer=saver)
        async for snap in graph.aget_state_history(config, limit=limit):
            parent = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            entry = {
                "checkpoint_id": snap.config["configurable"]["checkpoint_id"],
                "parent_checkpoint_id": parent,
                "step": (snap.metadata or {}).get("step"),
                "source": (snap.metadata or {}).get("source"),
                "created_at": snap.created_at,
                "next": list(snap.next),
            }
            if values:
                entry["values"] = jsonable(snap.values)
            entries.append(entry)
        return entries
    async for tup in saver.alist(config, limit=limit):
        parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        entries.append(
            {
                "checkpoint_id": tup.config["configurable"]["checkpoint_id"],
                "parent_checkpoint_id": parent,
                "step": tup.metadata.get("step"),
                "source": tup.metadata.get("source"),
                "created_at": tup.checkpoint.get("ts"),
                "next": None,
            }
        )
    return entries


@router.post("/runs/{run_id}/replay", status_code=201)
async def replay_run(run_id: UUID, body: ReplayRequest, rt: Runtime, who: Writer) -> Run:
    original = await _run_or_404(rt, run_id)
    try:
        return await fork_run(rt.pool, original, body.checkpoint_id, created_by=who)
    except CheckpointNotFound as exc:
        raise HTTPException(404, error_body(str(exc), field="checkpoint_id")) from None


def _sse(event_id: int | None, kind: str, data: Any) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


def event_stream(rt: RunsRuntime, run_id: UUID, start: int = 0, follow: bool = True) -> StreamingResponse:
    """Server-sent events of a run after event `start` (node progress, lifecycle and whatever else
    the run records); with `follow`, the stream ends only when the run has finished."""

    async def stream() -> AsyncIterator[str]:
        last = start
        sub = rt.listener.subscribe(EVENTS_CHANNEL, key=str(run_id))
        try:
            while True:
                events = await rt.queue.events_after(run_id, last)
                for event in events:
                    last = event.id
                    yield _sse(event.id, event.kind, event.model_dump(mode="json"))
                if events:
                    continue
                run = await rt.queue.get(run_id)
                if run is None or run.status.finished or not follow:
                    # The run may have finished (and written its last events) between the read
                    # above and this status check: drain once more so `end` really comes last.
                    for event in await rt.queue.events_after(run_id, last):
                        last = event.id
                        yield _sse(event.id, event.kind, event.model_dump(mode="json"))
                    status = run.status.value if run else "deleted"
                    yield _sse(None, "end", {"status": status})
                    return
                if not await sub.wait(SSE_KEEPALIVE_SECONDS):
                    yield ": keep-alive\n\n"
        finally:
            sub.close()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def resume_point(after: int, last_event_id: str | None) -> int:
    """Where a (re)connecting event stream starts: the Last-Event-ID header wins over `after`."""
    return int(last_event_id) if last_event_id and last_event_id.isdigit() else after


@router.get("/runs/{run_id}/events")
async def run_events(
    run_id: UUID,
    rt: Runtime,
    after: Annotated[int, Query(ge=0)] = 0,
    follow: bool = True,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events of the run (node progress, lifecycle); ends when the run has finished."""
    await _run_or_404(rt, run_id)
    return event_stream(rt, run_id, resume_point(after, last_event_id), follow)
