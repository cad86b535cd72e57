"""The dispatcher: hands ready tasks to the best free agent over the bus.

One loop per orchestrator process; several processes dispatch at once without double assignment
(claims are `FOR UPDATE SKIP LOCKED`, assignments fenced by attempt and checked against the agent's
capacity under a per-agent lock in SQL). Each round:

1. expire what nobody looks after (leases of killed agents, tasks past their timeout): they are
   ready again after backoff, or final; an expired attempt still holding work is cancelled at its
   agent by the agent itself (its heartbeat is fenced out);
2. read the live agents from the registry (cached for half a second) and their load from SQL;
3. claim at most as many ready tasks as there are free slots, in priority order, in one query;
4. give each the agent service with the most free capacity for its capability, and send the
   request over the bus without waiting: the agent marks the task running, renews its lease and
   records the outcome itself (shared/agents/task_lease.py), so nothing is lost when this process dies.

It sleeps until a task becomes ready (NOTIFY 'devtools_tasks'), the next `not_before`, or the
next lease check, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from agent_orchestrator.runs.notify import Listener
from agent_orchestrator.tasks import metrics
from agent_orchestrator.tasks.errors import TaskArgumentError
from agent_orchestrator.tasks.models import AssignOutcome, ErrorKind, Task, TaskStatus
from agent_orchestrator.tasks.plans import resolve_bindings
from agent_orchestrator.tasks.store import TASKS_CHANNEL, TaskStore
from shared.agents import RegistryClient, RegistryError
from shared.bus import AgentRequestEvent, BusUnavailable, EventBus, InterAgentEvent, InterAgentEventType

log = logging.getLogger(__name__)

DISPATCHER_AGENT_ID = "dispatcher"
# Agents in these states take no new work.
UNAVAILABLE = frozenset({"offline", "draining"})


@dataclass
class DispatcherOptions:
    batch_size: int = 100  # tasks claimed per query at most
    claim_lease_seconds: float = 10.0  # time for the agent to start a task it was sent
    task_lease_seconds: float = 15.0  # the lease the agent renews while it works
    expiry_interval_seconds: float = 1.0  # how often leases and deadlines are checked
    idle_wait_seconds: float = 5.0  # longest sleep without a notification
    no_agent_retry_seconds: float = 1.0  # a task nobody can take now is looked at again after this
    registry_ttl_seconds: float = 0.5  # how long the registry's view of the agents is reused
    send_concurrency: int = 32  # bus sends in flight at once (each holds a Redis connection)


@dataclass
class ServiceCapacity:
    """What an agent service offers, summed over its replicas as the registry sees them (they
    consume one bus stream): its capabilities and capacity."""

    name: str
    capabilities: set[str] = field(default_factory=set)
    capacity: int = 0


def new_dispatcher_id() -> str:
    return f"dispatcher:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def services_from_records(records: list[dict[str, Any]]) -> dict[str, ServiceCapacity]:
    """Group registry records (one per replica) by agent service; unavailable replicas count nothing."""
    services: dict[str, ServiceCapacity] = {}
    for record in records:
        if record.get("status") in UNAVAILABLE:
            continue
        name = str((record.get("metadata") or {}).get("service") or record["agent_id"])
        service = services.setdefault(name, ServiceCapacity(name))
        service.capabilities.update(c["name"] for c in record.get("capabilities") or [])
        service.capacity += int(record.get("capacity") or 0)
    return services


class Dispatcher:
    def __init__(
        self,
        store: TaskStore,
        bus: EventBus,
        registry: RegistryClient,
        database_url: str,
        options: DispatcherOptions | None = None,
        dispatcher_id: str | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.registry = registry
        self.database_url = database_url
        self.options = options or DispatcherOptions()
        self.id = dispatcher_id or new_dispatcher_id()
        self._next_expiry = 0.0
        self._services_cache: tuple[float, dict[str, ServiceCapacity]] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        listener = Listener(self.database_url, [TASKS_CHANNEL], name="devtools-dispatcher")
        await listener.start()
        wake = listener.subscribe(TASKS_CHANNEL)
        log.info("dispatcher started", extra={"dispatcher": self.id})
        try:
            while not stop.is_set():
                try:
                    sent = await self.dispatch_once()
                except (RegistryError, BusUnavailable, OSError, psycopg.OperationalError) as exc:
                    # The registry, Redis or the database is away for a moment: try again shortly and
                    # lose nothing (claimed tasks that were not sent are released or their claim expires).
                    log.warning("dispatch round failed", extra={"error": str(exc)})
                    sent = 0
                    await asyncio.sleep(self.options.no_agent_retry_seconds)
                except Exception:
                    # A bug must not stop dispatching for good: say so loudly and go on.
                    log.exception("dispatch round failed unexpectedly")
                    sent = 0
                    await asyncio.sleep(self.options.no_agent_retry_seconds)
                if sent:
                    continue  # more may be ready: claim again before sleeping
                await self._sleep(wake, stop)
        finally:
            wake.close()
            await listener.stop()
            log.info("dispatcher stopped", extra={"dispatcher": self.id})

    async def _sleep(self, wake: Any, stop: asyncio.Event) -> None:
        due = await self.store.seconds_until_next_due()
        until_expiry = max(self._next_expiry - time.monotonic(), 0.0)
        timeout = min(self.options.idle_wait_seconds, until_expiry, due if due is not None else float("inf"))
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(wake.wait(max(timeout, 0.0)))
        try:
            await asyncio.wait({stopping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()

    async def dispatch_once(self) -> int:
        """One round: expire, claim up to the free capacity, assign, send. Returns how many were sent."""
        if time.monotonic() >= self._next_expiry:
            await self.expire()
            self._next_expiry = time.monotonic() + self.options.expiry_interval_seconds
        services = await self._services()
        load = await self.store.agent_load(list(services))
        free = {name: s.capacity - (load[name].total if name in load else 0) for name, s in services.items()}
        capabilities = sorted({c for name, s in services.items() if free[name] > 0 for c in s.capabilities})
        room = sum(max(n, 0) for n in free.values())
        if not capabilities or room <= 0:
            return 0
        claimed = await self.store.claim_ready(
            self.id, min(room, self.options.batch_size), self.options.claim_lease_seconds, capabilities
        )
        if not claimed:
            return 0
        plan, unplaced = self._plan(claimed, services, free)
        outcomes = await self.store.assign_agents(
            [(task, agent, services[agent].capacity) for task, agent in plan],
            lease_seconds=self.options.claim_lease_seconds,
        )
        to_send = []
        for task, agent in plan:
            outcome = outcomes.get(task.id)
            if outcome is AssignOutcome.ASSIGNED:
                to_send.append((task, agent))
            elif outcome is AssignOutcome.AT_CAPACITY:
                unplaced.append(task)  # another dispatcher filled that agent meanwhile
        for task in unplaced:
            await self.store.release(
                task.id,
                task.attempt,
                self.options.no_agent_retry_seconds,
                f"no live agent with free capacity offers {task.capability!r}",
            )
            metrics.TASKS_WAITING_FOR_AGENT.labels(task.capability).inc()
        limit = asyncio.Semaphore(self.options.send_concurrency)

        async def send(task: Task, agent: str) -> bool:
            async with limit:
                return await self._send(task, agent)

        return sum(await asyncio.gather(*(send(task, agent) for task, agent in to_send)))

    @staticmethod
    def _plan(
        claimed: list[Task], services: dict[str, ServiceCapacity], free: dict[str, int]
    ) -> tuple[list[tuple[Task, str]], list[Task]]:
        """The agent service for each claimed task: the one with the most free slots for its
        capability (then the most capacity); tasks no service can take now are returned apart."""
        plan: list[tuple[Task, str]] = []
        unplaced: list[Task] = []
        for task in claimed:
            candidates = [
                s for s in services.values() if task.capability in s.capabilities and free[s.name] > 0
            ]
            if not candidates:
                unplaced.append(task)
                continue
            best = max(candidates, key=lambda s: (free[s.name], s.capacity))
            free[best.name] -= 1
            plan.append((task, best.name))
        return plan, unplaced

    async def _services(self) -> dict[str, ServiceCapacity]:
        """The live agent services, re-read from the registry at most every `registry_ttl_seconds`."""
        now = time.monotonic()
        if self._services_cache is None or now - self._services_cache[0] >= self.options.registry_ttl_seconds:
            self._services_cache = (now, services_from_records(await self.registry.list_agents()))
        return self._services_cache[1]

    async def _send(self, task: Task, agent: str) -> bool:
        payload = task.payload
        if task.bindings:
            sources = {source.split(".", 1)[0] for source in task.bindings.values()}
            try:
                results = await self.store.results(task.ticket_id, task.phase, sorted(sources))
                payload = resolve_bindings(task.payload, task.bindings, results)
            except TaskArgumentError as exc:
                # A plan that binds what its step did not return: trying again cannot help.
                await self.store.fail(task.id, task.attempt, str(exc), ErrorKind.INVALID_INPUT)
                return False
        request = AgentRequestEvent(
            source_agent=DISPATCHER_AGENT_ID,
            target_agent=agent,
            request_type=task.request_type,
            payload=payload,
            timeout_seconds=task.timeout_seconds,
            correlation_id=str(task.ticket_id),
            metadata={
                "task_id": str(task.id),
                "task_attempt": task.attempt,
                "task_lease_seconds": self.options.task_lease_seconds,
                "ticket_id": str(task.ticket_id),
                "phase": task.phase,
            },
        )
        try:
            await self.bus.send_request(request)
        except BusUnavailable:
            await self.store.release(
                task.id, task.attempt, self.options.no_agent_retry_seconds, "bus unavailable"
            )
            raise
        if task.ready_at is not None:
            latency = (datetime.now(UTC) - task.ready_at).total_seconds()
            metrics.DISPATCH_LATENCY.observe(max(latency, 0.0))
        metrics.TASKS_DISPATCHED.labels(task.capability).inc()
        if task.attempt > 1:
            metrics.TASK_REASSIGNMENTS.labels(task.capability).inc()
        await self._emit(
            InterAgentEventType.TASK_DELEGATED,
            task,
            {"agent": agent, "attempt": task.attempt, "request_type": task.request_type},
        )
        return True

    async def expire(self) -> list[Task]:
        """Expire leases and deadlines, sample the task gauges; count and announce what happened."""
        expired = await self.store.expire_leases()
        counts, due = await self.store.status_counts()
        for status in TaskStatus:
            metrics.TASKS_BY_STATUS.labels(status.value).set(counts.get(status.value, 0))
        metrics.READY_QUEUE_DEPTH.set(due)
        by_kind: dict[str, int] = defaultdict(int)
        for task in expired:
            by_kind[task.error_kind or "unknown"] += 1
            if task.error_kind == "timeout":
                metrics.TASK_TIMEOUTS.labels(task.capability).inc()
            await self._emit(
                InterAgentEventType.TASK_FAILED,
                task,
                {
                    "attempt": task.attempt,
                    "error": task.error,
                    "kind": task.error_kind,
                    "status": task.status,
                },
            )
        if expired:
            log.info("task leases expired", extra={"dispatcher": self.id, "by_kind": dict(by_kind)})
        return expired

    async def _emit(self, event_type: InterAgentEventType, task: Task, data: dict[str, Any]) -> None:
        try:
            await self.bus.emit(
                InterAgentEvent(
                    event_type=event_type,
                    source_agent=DISPATCHER_AGENT_ID,
                    correlation_id=str(task.ticket_id),
                    payload={"task_id": str(task.id), "phase": task.phase, "key": task.key, **data},
                )
            )
        except BusUnavailable as exc:  # the state is in SQL; a missed broadcast costs observers only
            log.warning("task event not published", extra={"task_id": str(task.id), "error": str(exc)})
