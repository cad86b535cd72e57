"""Graph templates and state reducers, executed with the Postgres checkpointer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command, interrupt

from agent_orchestrator.runs.checkpointing import checkpointer, run_config
from agent_orchestrator.runs.workflow_table import UnknownWorkflow, WorkflowTable
from agent_orchestrator.workflows.state import initial_state
from agent_orchestrator.workflows.templates import TemplateError, map_reduce, parallel, sequential
from support.tests.runs.toys import ToyInput, ToyState, branch, merge, square, total

pytestmark = pytest.mark.integration


@pytest.fixture
async def saver(database_url: str) -> AsyncIterator[AsyncPostgresSaver]:
    async with checkpointer(database_url, max_size=4) as s:
        yield s


def step(name: str) -> Any:
    async def node(state: ToyState) -> dict[str, Any]:
        return {"steps": [name], "subtask_status": {name: "done"}}

    return node


async def test_sequential_runs_steps_in_order_and_checkpoints_each(saver: AsyncPostgresSaver) -> None:
    graph = sequential(ToyState, [("a", step("a")), ("b", step("b")), ("c", step("c"))]).compile(
        checkpointer=saver
    )
    config = run_config(str(uuid.uuid4()))
    out = await graph.ainvoke(initial_state("t1", "seq", label="x"), config, durability="sync")
    assert out["steps"] == ["a", "b", "c"]
    assert out["subtask_status"] == {"a": "done", "b": "done", "c": "done"}
    history = [s async for s in graph.aget_state_history(config)]
    assert [list(s.next) for s in history] == [[], ["c"], ["b"], ["a"], ["__start__"]]


async def test_parallel_branches_merge_through_reducers(saver: AsyncPostgresSaver) -> None:
    names = ("api", "user_guide", "deployment_guide")
    graph = parallel(ToyState, {n: branch(n) for n in names}, ("merge", merge)).compile(checkpointer=saver)
    out = await graph.ainvoke(
        initial_state("t2", "par", label="docs", steps=["start"]), run_config(str(uuid.uuid4()))
    )
    assert out["steps"][0] == "start" and sorted(out["steps"][1:]) == sorted(names)  # appended, none lost
    assert out["partial_results"] == {n: f"docs:{n}" for n in names}  # merged key by key
    assert out["agent_status"] == dict.fromkeys(names, "done")
    assert out["final_result"] == sorted(names)


async def test_parallel_payload_selects_what_each_branch_sees(saver: AsyncPostgresSaver) -> None:
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return {"partial_results": {payload["doc"]: payload["label"]}}

    graph = parallel(
        ToyState,
        [("one", echo), ("two", echo)],
        ("merge", merge),
        payload=lambda state, name: {"doc": name, "label": state["label"].upper()},
    ).compile(checkpointer=saver)
    out = await graph.ainvoke({"label": "x"}, run_config(str(uuid.uuid4())))
    assert out["partial_results"] == {"one": "X", "two": "X"}


async def test_map_reduce_maps_every_item_then_reduces(saver: AsyncPostgresSaver) -> None:
    graph = map_reduce(ToyState, "items", ("square", square), ("total", total)).compile(checkpointer=saver)
    out = await graph.ainvoke({"label": "m", "items": [1, 2, 3, 4]}, run_config(str(uuid.uuid4())))
    assert out["partial_results"] == {"0": 1, "1": 4, "2": 9, "3": 16}
    assert out["final_result"] == 30
    empty = await graph.ainvoke({"label": "m", "items": []}, run_config(str(uuid.uuid4())))
    assert empty["final_result"] == 0


async def test_map_reduce_sends_what_payload_builds_and_runs_then_after_the_reducer(
    saver: AsyncPostgresSaver,
) -> None:
    def payload(state: dict[str, Any], item: int, index: int) -> dict[str, Any]:
        return {"item": item + 10, "index": index}  # what parallel_docs does: a branch of its own shape

    def after(state: dict[str, Any]) -> dict[str, Any]:
        return {"steps": [f"after total {state['final_result']}"]}

    graph = map_reduce(
        ToyState, "items", ("square", square), ("total", total), payload=payload, then=[("after", after)]
    ).compile(checkpointer=saver)
    out = await graph.ainvoke({"label": "m", "items": [1, 2]}, run_config(str(uuid.uuid4())))
    assert out["partial_results"] == {"0": 121, "1": 144}
    assert out["steps"] == ["after total 265"]
    with pytest.raises(TemplateError, match="used twice"):
        map_reduce(ToyState, "items", ("square", square), ("total", total), then=[("total", after)])


def test_template_shapes_are_checked() -> None:
    with pytest.raises(TemplateError, match="used twice"):
        sequential(ToyState, [("a", step("a")), ("a", step("a"))])
    with pytest.raises(TemplateError, match="at least one"):
        sequential(ToyState, [])
    with pytest.raises(TemplateError, match="reserved"):
        parallel(ToyState, {"__start__": step("x")}, ("merge", merge))


def test_workflow_table_validates_input_and_names_unknown_workflows() -> None:
    workflows = WorkflowTable()
    workflows.register("toy", lambda: sequential(ToyState, [("a", step("a"))]), ToyInput)
    with pytest.raises(UnknownWorkflow, match="known: toy"):
        workflows.get("other")
    state = workflows.get("toy").start_state({"label": "x"}, "run-1")
    assert state["task_id"] == "run-1" and state["workflow_type"] == "toy" and state["label"] == "x"
    with pytest.raises(ValueError, match="label"):
        workflows.get("toy").start_state({}, "run-2")


async def test_interrupted_thread_resumes_in_a_new_process_saver(database_url: str) -> None:
    async def ask(state: ToyState) -> dict[str, Any]:
        return {"decision": interrupt({"q": state["label"]})}

    builder = sequential(ToyState, [("a", step("a")), ("ask", ask), ("b", step("b"))])
    config = run_config(str(uuid.uuid4()))
    async with checkpointer(database_url, max_size=2) as first:
        await builder.compile(checkpointer=first).ainvoke({"label": "q1"}, config, durability="sync")
    # A different pool and saver, as another worker process would have: the thread is in Postgres.
    async with checkpointer(database_url, max_size=2) as second:
        graph = builder.compile(checkpointer=second)
        waiting = await graph.aget_state(config)
        assert [i.value for i in waiting.interrupts] == [{"q": "q1"}]
        out = await graph.ainvoke(Command(resume="yes"), config, durability="sync")
    assert out["decision"] == "yes" and out["steps"] == ["a", "b"]
