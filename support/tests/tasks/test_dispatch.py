"""The dispatcher through the real services: a registry and two replicas of the echo agent as
processes, the bus on Redis, tasks in PostgreSQL. The agents record their own outcomes; the tests
watch the database and what the agents recorded in Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import Task, TaskSpec, TaskStatus, TaskStore, specs_from_plan
from agent_orchestrator.tasks.dispatcher import Dispatcher, DispatcherOptions
from shared.agents import RegistryClient
from shared.bus import EventBus
from shared.db import open_pool
from shared.process import process_group_alive
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    registry_record,
    start_echo_agent,
    wait_until,
)
from support.tests.tasks.helpers import insert_ticket, sql

pytestmark = pytest.mark.integration

CAPACITY = 2  # the echo agent's, per replica


@pytest.fixture(scope="module")
def replicas(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[dict[str, ServiceProcess]]:
    started = {r: start_echo_agent(module_env, registry, log_dir, replica=r) for r in ("a", "b")}
    try:
        for replica in started:
            wait_until(
                lambda r=replica: registry_record(registry, f"echo.{r}"), what=f"echo.{replica} registered"
            )
        yield started
    finally:
        for service in started.values():
            if service.process.poll() is None:
                service.terminate()


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, min_size=1, max_size=8, name="dispatch-tests")
    yield pool
    await pool.close()


@pytest.fixture
async def dispatching(
    pool: AsyncConnectionPool,
    database_url: str,
    redis_url: str,
    module_prefix: str,
    registry: ServiceProcess,
    replicas: dict[str, ServiceProcess],
) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in this test's event loop for the test's duration."""
    bus = EventBus(redis_url, module_prefix, agent_id="dispatcher")
    await bus.start()
    client = RegistryClient(registry.url)
    options = DispatcherOptions(claim_lease_seconds=3, task_lease_seconds=1.5, expiry_interval_seconds=0.2)
    dispatcher = Dispatcher(TaskStore(pool), bus, client, database_url, options)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await client.close()
        await bus.close()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 60) -> Any:
    """Poll observable state (the database, Redis) until `check` is truthy."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def wait_spec(key: str, gate: str, *depends_on: str, **fields: Any) -> TaskSpec:
    payload = {"gate": gate, "max_wait_seconds": 120}
    return TaskSpec(
        key=key,
        capability="wait",
        request_type="WAIT",
        payload=payload,
        depends_on=list(depends_on),
        **fields,
    )


class Gates:
    def __init__(self, client: redis.Redis, prefix: str, ticket: UUID) -> None:
        self.client, self.prefix, self.ticket = client, prefix, ticket.hex[:8]

    def name(self, key: str) -> str:
        return f"{self.ticket}-{key}"

    def started(self, key: str) -> list[str]:
        return list(self.client.lrange(f"{self.prefix}:test:started:{self.name(key)}", 0, -1))

    def release(self, key: str) -> None:
        self.client.rpush(f"{self.prefix}:test:release:{self.name(key)}", "go")


async def task_map(store: TaskStore, ticket: UUID) -> dict[str, Task]:
    return {t.key: t for t in await store.list_tasks(ticket)}


async def test_a_diamond_runs_its_middle_tasks_together_and_the_last_after_both(
    pool: AsyncConnectionPool, dispatching: Dispatcher, redis_client: redis.Redis, module_prefix: str
) -> None:
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    gates = Gates(redis_client, module_prefix, ticket)
    specs = [
        wait_spec("a", gates.name("a")),
        wait_spec("b", gates.name("b"), "a"),
        wait_spec("c", gates.name("c"), "a"),
        wait_spec("d", gates.name("d"), "b", "c"),
    ]
    await store.create_tasks(ticket, "implement", specs)

    await eventually(lambda: asyncio.to_thread(gates.started, "a"), "a started")
    assert (gates.started("b"), gates.started("c"), gates.started("d")) == ([], [], [])
    gates.release("a")
    # b and c run at the same time: both started while neither was released.
    await eventually(lambda: asyncio.to_thread(lambda: gates.started("b") and gates.started("c")), "b and c")
    assert gates.started("d") == []
    gates.release("b")
    await eventually(lambda: _status_is(store, ticket, "b", TaskStatus.SUCCEEDED), "b succeeded")
    assert gates.started("d") == []  # c still runs: d waits for both
    gates.release("c")
    await eventually(lambda: asyncio.to_thread(gates.started, "d"), "d started")
    gates.release("d")
    await eventually(lambda: _status_is(store, ticket, "d", TaskStatus.SUCCEEDED), "d succeeded")
    tasks = await task_map(store, ticket)
    assert {k: (t.status, t.attempt) for k, t in tasks.items()} == {
        k: (TaskStatus.SUCCEEDED, 1) for k in "abcd"
    }
    assert tasks["d"].result is not None and tasks["d"].result["released"] is True


async def _status_is(store: TaskStore, ticket: UUID, key: str, status: TaskStatus) -> bool:
    return (await task_map(store, ticket))[key].status is status


async def test_priorities_are_honoured_and_capacity_is_never_exceeded(
    pool: AsyncConnectionPool, dispatching: Dispatcher, redis_client: redis.Redis, module_prefix: str,
    replicas: dict[str, ServiceProcess],
) -> None:  # fmt: skip
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    gates = Gates(redis_client, module_prefix, ticket)
    # Fill every slot of both replicas, then queue work of three priorities behind them.
    blockers = [wait_spec(f"block{i}", gates.name(f"block{i}")) for i in range(2 * CAPACITY)]
    await store.create_tasks(ticket, "implement", blockers)
    await eventually(
        lambda: asyncio.to_thread(lambda: all(gates.started(f"block{i}") for i in range(2 * CAPACITY))),
        "every slot taken",
    )
    queued = [
        wait_spec(name, gates.name(name), priority=p) for name, p in (("low", -5), ("high", 50), ("mid", 10))
    ]
    await store.create_tasks(ticket, "implement", queued)
    # Nothing more starts while the agents are full: the tasks stay ready, unclaimed.
    assert {t.key: t.status for t in await store.list_tasks(ticket) if t.key in ("low", "mid", "high")} == {
        "low": TaskStatus.READY, "mid": TaskStatus.READY, "high": TaskStatus.READY,
    }  # fmt: skip
    order: list[str] = []
    for i in range(3):
        gates.release(f"block{i}")
        started = await eventually(
            lambda: asyncio.to_thread(
                lambda: next((k for k in ("high", "mid", "low") if k not in order and gates.started(k)), None)
            ),
            f"a queued task to start after block{i}",
        )
        order.append(started)
    assert order == ["high", "mid", "low"]
    for key in ("block3", "high", "mid", "low"):
        gates.release(key)
    await eventually(lambda: _all_final(store, ticket), "every task final")
    for replica in replicas:
        seen = [
            int(n) for n in redis_client.lrange(f"{module_prefix}:test:active:echo.{replica}:seen", 0, -1)
        ]
        assert seen and max(seen) <= CAPACITY, (replica, seen)


async def _all_final(store: TaskStore, ticket: UUID) -> bool:
    return all(t.status.final for t in await store.list_tasks(ticket))


async def test_a_retryable_failure_waits_for_not_before_and_a_permanent_one_is_not_retried(
    pool: AsyncConnectionPool, dispatching: Dispatcher, replicas: dict[str, ServiceProcess]
) -> None:
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    fail = "FAIL"
    await store.create_tasks(
        ticket,
        "implement",
        [
            TaskSpec(
                key="flaky",
                capability="echo",
                request_type=fail,
                payload={"kind": "retryable"},
                max_attempts=3,
            ),
            TaskSpec(
                key="broken",
                capability="echo",
                request_type=fail,
                payload={"kind": "permanent"},
                max_attempts=3,
            ),
        ],
    )
    flaky = await eventually(
        lambda: _task_where(
            store, ticket, "flaky", lambda t: t.failures == 1 and t.status is TaskStatus.READY
        ),
        "flaky failed once",
    )
    broken = await eventually(
        lambda: _task_where(store, ticket, "broken", lambda t: t.status is TaskStatus.FAILED), "broken failed"
    )
    assert (broken.attempt, broken.failures, broken.error_class, broken.error_kind) == (
        1, 1, "permanent", "broken_repository",
    )  # fmt: skip
    # The agent asked for Retry-After 7 s: not due before, and not claimed meanwhile.
    [row] = await sql(
        pool,
        "SELECT extract(epoch FROM not_before - updated_at)::float AS wait FROM tasks WHERE id = %s",
        flaky.id,
    )
    assert row["wait"] >= 7
    assert (flaky.attempt, flaky.error_kind, flaky.error_class) == (1, "rate_limited", "retryable")
    await dispatching.dispatch_once()
    assert (await store.get(flaky.id)).attempt == 1  # type: ignore[union-attr]
    # Once due (moved on the database's clock), it is dispatched again.
    await sql(pool, "UPDATE tasks SET not_before = now() WHERE id = %s", flaky.id)
    await sql(pool, "NOTIFY devtools_tasks, 'echo'")
    again = await eventually(
        lambda: _task_where(store, ticket, "flaky", lambda t: t.failures == 2),
        "flaky's second attempt failed",
    )
    assert again.attempt == 2
    assert (await store.get(broken.id)).attempt == 1  # type: ignore[union-attr]
    # The agents count what they recorded, by error class: retries are the outcome="ready" series.
    outcomes = await asyncio.to_thread(_outcome_counts, replicas)
    assert outcomes[("ready", "retryable")] >= 1 and outcomes[("failed", "permanent")] >= 1, outcomes


def _outcome_counts(replicas: dict[str, ServiceProcess]) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for service in replicas.values():
        if service.process.poll() is not None:
            continue
        for family in text_string_to_metric_families(
            httpx.get(f"{service.url}/metrics", headers=AGENT_AUTH, timeout=10).text
        ):
            if family.name == "devtools_agent_task_outcomes":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[(sample.labels["outcome"], sample.labels["error_class"])] += sample.value
    return counts


async def _task_where(store: TaskStore, ticket: UUID, key: str, check: Callable[[Task], bool]) -> Task | None:
    task = (await task_map(store, ticket)).get(key)
    return task if task is not None and check(task) else None


async def test_a_timed_out_task_has_its_process_killed(
    pool: AsyncConnectionPool, dispatching: Dispatcher, tmp_path: Path
) -> None:
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    pids = tmp_path / "pids"
    command = f"sleep 300 & echo $$ $! > {pids}; wait"
    await store.create_tasks(
        ticket,
        "implement",
        [TaskSpec(key="slow", capability="echo", request_type="RUN", payload={"command": command},
                  timeout_seconds=1, max_attempts=1)],
    )  # fmt: skip
    await eventually(
        lambda: asyncio.to_thread(lambda: pids.exists() and len(pids.read_text().split()) == 2), "started"
    )
    shell, child = (int(p) for p in pids.read_text().split())
    group = os.getpgid(shell)  # the session's first process is the reaper (shared/reaper.py)
    task = await eventually(
        lambda: _task_where(store, ticket, "slow", lambda t: t.status is TaskStatus.TIMED_OUT), "timed out"
    )
    assert (task.error_kind, task.attempt) == ("timeout", 1)
    # The agent's next heartbeat is fenced out: it cancels the work and kills the command's group.
    await eventually(
        lambda: asyncio.to_thread(lambda: not process_group_alive(group)), "the command's group gone"
    )
    assert os.getpgid(child) == group if _exists(child) else True


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_cancelled_task_has_its_process_killed(
    pool: AsyncConnectionPool, dispatching: Dispatcher, tmp_path: Path
) -> None:
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    pids = tmp_path / "pids"
    command = f"sleep 300 & echo $$ $! > {pids}; wait"
    [task] = await store.create_tasks(
        ticket,
        "implement",
        [TaskSpec(key="long", capability="echo", request_type="RUN", payload={"command": command})],
    )
    await eventually(
        lambda: asyncio.to_thread(lambda: pids.exists() and len(pids.read_text().split()) == 2), "started"
    )
    shell = int(pids.read_text().split()[0])

    cancelled = await store.cancel(task.id, "tests")

    assert cancelled.status is TaskStatus.CANCELLED
    await eventually(
        lambda: asyncio.to_thread(lambda: not process_group_alive(shell)), "the command's group gone"
    )
    # The agent's late answer (an error: its work was cancelled) changes nothing.
    after = await store.get(task.id)
    assert after is not None and after.status is TaskStatus.CANCELLED


async def test_two_dispatchers_never_assign_a_task_twice(
    pool: AsyncConnectionPool, dispatching: Dispatcher, database_url: str, redis_url: str, module_prefix: str,
    registry: ServiceProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    bus = EventBus(redis_url, module_prefix, agent_id="dispatcher-2")
    await bus.start()
    client = RegistryClient(registry.url)
    second = Dispatcher(TaskStore(pool), bus, client, database_url, DispatcherOptions(task_lease_seconds=1.5))
    stop = asyncio.Event()
    running = asyncio.create_task(second.run(stop))
    try:
        store = TaskStore(pool)
        ticket = await insert_ticket(pool)
        gates = Gates(redis_client, module_prefix, ticket)
        keys = [f"w{i}" for i in range(40)]
        for key in keys:
            gates.release(key)  # released before it starts: each WAIT answers at once
        await store.create_tasks(ticket, "implement", [wait_spec(key, gates.name(key)) for key in keys])
        await eventually(lambda: _all_final(store, ticket), "every task final")
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await client.close()
        await bus.close()
    tasks = await store.list_tasks(ticket)
    # Each ran once: one start per task on the agents, no lost attempt. (A task handed back because
    # the other dispatcher filled the agent first is claimed again: its attempt number grows.)
    assert {t.status for t in tasks} == {TaskStatus.SUCCEEDED} and {t.failures for t in tasks} == {0}
    assert {key: len(gates.started(key)) for key in keys} == dict.fromkeys(keys, 1)
    claimed_by = {t.claimed_by for t in tasks}
    assert claimed_by <= {dispatching.id, second.id}


async def test_a_plan_runs_with_its_bindings_filled_from_earlier_results(
    pool: AsyncConnectionPool, dispatching: Dispatcher
) -> None:
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    plan = {
        "steps": [
            {"id": "first", "title": "say it", "capability": "echo", "request_type": "ECHO",
             "payload": {"text": "hi"}},
            {"id": "second", "title": "say it twice", "capability": "echo", "request_type": "ECHO",
             "payload": {"repeat": 2}, "depends_on": ["first"], "bindings": {"text": "first.text"}},
            {"id": "third", "title": "bound to nothing", "capability": "echo", "request_type": "ECHO",
             "payload": {}, "depends_on": ["first"], "bindings": {"text": "first.no_such_field"}},
        ]
    }  # fmt: skip
    await store.create_tasks(ticket, "plan", specs_from_plan(plan))
    await eventually(lambda: _all_final(store, ticket), "the plan's tasks final")
    tasks = await task_map(store, ticket)
    assert tasks["second"].status is TaskStatus.SUCCEEDED and tasks["second"].result["text"] == "hihi"
    # A binding its step did not produce: a permanent failure naming it, no retry.
    third = tasks["third"]
    assert (third.status, third.error_class, third.failures) == (TaskStatus.FAILED, "permanent", 1)
    assert "first.no_such_field" in (third.error or "")


async def test_a_killed_agent_has_its_task_finished_by_another_replica_exactly_once(
    pool: AsyncConnectionPool, dispatching: Dispatcher, redis_client: redis.Redis, module_prefix: str,
    replicas: dict[str, ServiceProcess], registry: ServiceProcess,
) -> None:  # fmt: skip
    store = TaskStore(pool)
    ticket = await insert_ticket(pool)
    gates = Gates(redis_client, module_prefix, ticket)
    await store.create_tasks(ticket, "implement", [wait_spec("work", gates.name("work"), max_attempts=3)])
    [first] = await eventually(lambda: asyncio.to_thread(gates.started, "work"), "work started")
    victim = replicas[first.rsplit(".", 1)[1]]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(30)
    # The survivor takes the work over: either the bus hands it the dead replica's pending request
    # (same attempt; the survivor's heartbeats keep the lease) or the lease runs out and the
    # dispatcher sends a new attempt. Either way the task is finished once, by the survivor.
    await eventually(lambda: asyncio.to_thread(lambda: len(gates.started("work")) == 2), "work started again")
    second = gates.started("work")[1]
    assert second != first
    gates.release("work")
    done = await eventually(
        lambda: _task_where(store, ticket, "work", lambda t: t.status is TaskStatus.SUCCEEDED),
        "work succeeded",
    )
    assert done.result is not None and done.result["replica"] == second
    # A late answer of any attempt changes nothing now.
    for attempt in range(1, done.attempt + 2):
        assert not await store.complete(done.id, attempt, {"late": True})
    after = await store.get(done.id)
    assert after is not None and (after.status, after.result) == (TaskStatus.SUCCEEDED, done.result)
