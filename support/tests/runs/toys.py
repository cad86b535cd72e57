"""Toy workflows for the run-queue tests: plain Python nodes, registered on import.

Nodes record what they did in `toy_calls` (every node execution) and, through
`effects.run_once`, in `toy_effects` (the side effect that must happen once), so
tests can count executions across worker crashes. `ensure_toy_tables` creates both.
A worker started with TOY_BLOCK=<node> blocks forever in that node (after its effect),
which is where the chaos test kills it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from langgraph.types import interrupt
from pydantic import BaseModel, Field

from agent_orchestrator.runs.context import current_run
from agent_orchestrator.runs.effects import run_once
from agent_orchestrator.runs.errors import TransientRunError
from agent_orchestrator.workflows.outcome import WorkflowFailed
from agent_orchestrator.workflows.register import register_workflow
from agent_orchestrator.workflows.state import MultiAgentState, append_list
from agent_orchestrator.workflows.templates import map_reduce, parallel, sequential

TOY_TABLES_SQL = """
CREATE TABLE IF NOT EXISTS toy_calls (run_id uuid, node text, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS toy_effects (run_id uuid, step text, at timestamptz DEFAULT clock_timestamp());
"""


def ensure_toy_tables(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TOY_TABLES_SQL)


class ToyState(MultiAgentState, total=False):
    label: str
    steps: Annotated[list[str], append_list]
    decision: Any
    fail_times: int
    items: list[int]


class ToyInput(BaseModel):
    label: str = Field(min_length=1)
    fail_times: int = Field(0, ge=0)
    items: list[int] = Field(default_factory=list)


async def record_call(node: str) -> None:
    ctx = current_run()
    async with ctx.pool.connection() as conn:
        await conn.execute("INSERT INTO toy_calls (run_id, node) VALUES (%s, %s)", (ctx.run_id, node))


async def calls_of(node: str) -> int:
    ctx = current_run()
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM toy_calls WHERE run_id = %s AND node = %s", (ctx.run_id, node)
        )
        row = await cur.fetchone()
    return int(row["n"])  # type: ignore[index]


async def block_here_if_asked(node: str) -> None:
    if os.environ.get("TOY_BLOCK") == node:
        ctx = current_run()
        async with ctx.pool.connection() as conn:
            await conn.execute("SELECT add_run_event(%s, 'toy_blocking', %s, '{}')", (ctx.run_id, node))
        await asyncio.Event().wait()  # until the process is killed


async def prepare(state: ToyState) -> dict[str, Any]:
    await record_call("prepare")
    return {"steps": ["prepare"], "subtasks": [{"id": "prepare"}]}


async def deploy(state: ToyState) -> dict[str, Any]:
    await record_call("deploy")
    ctx = current_run()

    async def side_effect() -> dict[str, Any]:
        async with ctx.pool.connection() as conn:
            await conn.execute("INSERT INTO toy_effects (run_id, step) VALUES (%s, 'deploy')", (ctx.run_id,))
        return {"release": f"{state['label']}-1"}

    release = await run_once("deploy", side_effect)
    await block_here_if_asked("deploy")
    return {"steps": ["deploy"], "partial_results": {"deploy": release}}


async def verify(state: ToyState) -> dict[str, Any]:
    await record_call("verify")
    await block_here_if_asked("verify")
    return {"steps": ["verify"], "final_result": {"verified": state["partial_results"]["deploy"]}}


async def flaky(state: ToyState) -> dict[str, Any]:
    await record_call("flaky")
    if await calls_of("flaky") <= state.get("fail_times", 0):
        raise TransientRunError("the toy backend is unavailable")
    return {"steps": ["flaky"], "final_result": "ok"}


async def broken(state: ToyState) -> dict[str, Any]:
    await record_call("broken")
    raise ValueError("the toy node is broken")


async def verdict(state: ToyState) -> dict[str, Any]:
    await record_call("verdict")
    raise WorkflowFailed(f"{state['label']}: the change was not deployed")


async def approval(state: ToyState) -> dict[str, Any]:
    decision = interrupt({"question": f"deploy {state['label']}?", "label": state["label"]})
    return {"decision": decision, "steps": ["approval"]}


async def act(state: ToyState) -> dict[str, Any]:
    approved = isinstance(state.get("decision"), dict) and state["decision"].get("approved")
    if approved:
        return await deploy(state)
    return {"steps": ["skipped"], "final_result": {"rejected": True}}


async def forever(state: ToyState) -> dict[str, Any]:
    await record_call("forever")
    await asyncio.Event().wait()
    return {}


def branch(name: str) -> Any:
    async def node(state: ToyState) -> dict[str, Any]:
        await asyncio.sleep(0)  # let the branches interleave
        return {
            "steps": [name],
            "partial_results": {name: f"{state['label']}:{name}"},
            "agent_status": {name: "done"},
        }

    return node


async def merge(state: ToyState) -> dict[str, Any]:
    return {"final_result": sorted(state["partial_results"])}


async def square(payload: dict[str, Any]) -> dict[str, Any]:
    return {"partial_results": {str(payload["index"]): payload["item"] ** 2}}


async def total(state: ToyState) -> dict[str, Any]:
    return {"final_result": sum(state.get("partial_results", {}).values())}


register_workflow(
    "toy_deploy",
    lambda: sequential(ToyState, [("prepare", prepare), ("deploy", deploy), ("verify", verify)]),
    ToyInput,
)
register_workflow("toy_flaky", lambda: sequential(ToyState, [("flaky", flaky)]), ToyInput, max_attempts=3)
register_workflow("toy_broken", lambda: sequential(ToyState, [("broken", broken)]), ToyInput)
register_workflow("toy_verdict", lambda: sequential(ToyState, [("verdict", verdict)]), ToyInput)
register_workflow(
    "toy_approval",
    lambda: sequential(ToyState, [("prepare", prepare), ("approval", approval), ("act", act)]),
    ToyInput,
)
register_workflow("toy_forever", lambda: sequential(ToyState, [("forever", forever)]), ToyInput)
register_workflow(
    "toy_parallel",
    lambda: parallel(
        ToyState, {n: branch(n) for n in ("api", "user_guide", "deployment_guide")}, ("merge", merge)
    ),
    ToyInput,
)
register_workflow(
    "toy_map_reduce", lambda: map_reduce(ToyState, "items", ("square", square), ("total", total)), ToyInput
)
