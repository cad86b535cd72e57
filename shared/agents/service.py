"""An AgentDefinition as a running service: HTTP, bus consumption, registration, heartbeats, drain.

Replicas: every replica of an agent consumes the agent's own bus stream and its capability streams
(one consumer group), so work sent to the agent id or a capability is shared and a dead replica's
pending requests are reclaimed by the others. In the registry each replica has its own record:
the agent id itself, or `<agent_id>.<replica>` when DEVTOOLS_AGENT_REPLICA is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from prometheus_client import Gauge
from psycopg_pool import AsyncConnectionPool
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.agents.collaboration import install_collaboration_handlers
from shared.agents.registry_client import AgentRegistration, RegistryClient, RegistryError
from shared.agents.running import RunningRequests
from shared.agents.runtime import (
    AgentDefinition,
    HandlerSpec,
    RequestContext,
    RequestRejected,
    SharedCapacity,
    Via,
    check_request,
    execute,
    parse_payload,
    rejection_response,
)
from shared.agents.task_lease import TaskLease, TaskRef, announce_outcome, run_leased, task_error
from shared.bus import AgentRequestEvent, AgentResponseEvent, ErrorClass
from shared.cancellation import CancelToken
from shared.config import Settings, SettingsError, load_settings
from shared.db import open_pool
from shared.http import MetricsAccess, create_service_app, require_platform_caller, serve

log = logging.getLogger(__name__)

ACTIVE_REQUESTS = Gauge("devtools_agent_active_requests", "Requests being handled", ["agent"])


class AgentServiceSettings(BaseSettings):
    """Per-process agent settings (DEVTOOLS_AGENT_*); shared ones come from shared.config.Settings."""

    model_config = SettingsConfigDict(env_prefix="DEVTOOLS_AGENT_", extra="ignore")

    port: int | None = Field(None, ge=1, le=65535)  # overrides the definition's port_setting
    replica: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    heartbeat_interval_seconds: float = Field(10.0, gt=0, le=3600)
    # A request held this long by a replica that stopped renewing its lease is taken over.
    claim_idle_ms: int = Field(30_000, ge=100)
    public_url: str | None = None  # what the registry hands out, when not http://host:port
    registration: bool = True  # DEVTOOLS_AGENT_REGISTRATION=false: run without the registry


class AgentService:
    def __init__(self, agent: AgentDefinition, settings: Settings, rt: AgentServiceSettings) -> None:
        self.agent = agent
        self.settings = settings
        self.rt = rt
        self.registry_id = f"{agent.agent_id}.{rt.replica}" if rt.replica else agent.agent_id
        self.port = rt.port or (getattr(settings, agent.port_setting) if agent.port_setting else 0)
        if not self.port:
            raise SettingsError("DEVTOOLS_AGENT_PORT: needed when the agent has no port_setting")
        self.base_url = rt.public_url or f"http://{settings.host}:{self.port}"
        install_collaboration_handlers(agent)
        self.resources: dict[str, Any] = {
            "settings": settings,
            "replica_id": self.registry_id,
            "agent_definition": agent,
            "draining": lambda: self.draining,
        }
        # One count for both paths: the bus consumer alone does not see HTTP requests.
        self.slots = SharedCapacity(agent.capacity)
        self.draining = False
        self.registered = False
        self._last_status: str | None = "idle"
        self.bus: Any | None = None
        # Extra health checks of the process hosting this agent (the orchestrator: its database);
        # each returns fields for /health, and {"status": ...} overrides "healthy".
        self.health_probes: list[Callable[[], Awaitable[dict[str, Any]]]] = []
        self.consumer: Any | None = None
        self.registry: RegistryClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._register_task: asyncio.Task[None] | None = None
        # Requests executing now: a requester's cancel (shared/bus/cancels.py) reaches them here.
        self.running = RunningRequests(agent.agent_id)
        self._cancel_watch: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Opened on the first dispatched task: renews task leases (see task_lease.py).
        self._task_pool: AsyncConnectionPool | None = None
        self._task_pool_lock = asyncio.Lock()
        self.app = self._build_app()

    # -- load and status -----------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Requests executing now, over HTTP and the bus together (never above capacity)."""
        return self.slots.in_use

    def status(self) -> tuple[str | None, int]:
        """What heartbeats report: draining, busy while every slot is taken, idle otherwise."""
        if self.draining:
            return "draining", self.active
        return ("busy" if self.slots.full else "idle"), self.active

    def _status_changed(self, _full: bool | None = None) -> None:
        ACTIVE_REQUESTS.labels(self.agent.agent_id).set(self.active)
        status = self.status()[0]
        # Heartbeat at once only when the reported status flips, not on every request.
        if status != self._last_status and self.registry is not None and self.registered:
            self._last_status = status
            self.registry.kick()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from shared.bus import BusOptions, EventBus

        self._loop = asyncio.get_running_loop()
        self.bus = EventBus.from_settings(
            self.settings, agent_id=self.registry_id, options=BusOptions(claim_idle_ms=self.rt.claim_idle_ms)
        )
        await self.bus.start()
        self.resources["bus"] = self.bus
        if self.rt.registration:
            self.registry = RegistryClient.from_settings(self.settings)
            self.resources["registry"] = self.registry
        for hook in self.agent.startup_hooks:
            await hook(self.resources)
        self.consumer = await self.bus.serve_requests(
            self.agent.agent_id,
            self.agent.capability_names,
            self._handle_bus_request,
            concurrency=self.agent.capacity,
            on_full=self._status_changed,
        )
        self._cancel_watch = asyncio.create_task(
            self.bus.watch_cancels(self.running.ids, self.running.cancel, self._stopping),
            name="cancel-watch",
        )
        if self.registry is not None:
            self._register_task = asyncio.create_task(self._register_until_done(), name="register")
        log.info("agent started", extra={"agent_id": self.registry_id, "port": self.port})

    async def _register_until_done(self) -> None:
        assert self.registry is not None
        registration = AgentRegistration(
            agent_id=self.registry_id,
            agent_name=self.agent.name,
            base_url=self.base_url,
            capabilities=[c.as_dict() for c in self.agent.capabilities],
            capacity=self.agent.capacity,
            tags=self.agent.tags,
            metadata={
                **self.agent.metadata,
                "service": self.agent.agent_id,
                "replica": self.registry_id,
                "request_types": self.agent.supported_types,
                # Tells this process's record from one left by an earlier run (devtools up checks it).
                "pid": os.getpid(),
            },
            heartbeat_interval_seconds=self.rt.heartbeat_interval_seconds,
        )
        delay = 0.2
        while not self.draining:
            try:
                await self.registry.register(registration)
                self.registered = True
                self.registry.start_heartbeats(self.status)
                return
            except RegistryError as exc:  # the registry may start after us: keep trying
                log.warning("registration failed; retrying", extra={"error": exc.message, "in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def begin_drain(self) -> None:
        """Called from the signal handler: schedule the drain on the event loop."""
        if self._loop is not None and not self.draining:
            self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        """Stop taking new requests (HTTP answers 503, the bus consumer stops reading), finish held ones."""
        self.draining = True
        log.info("draining", extra={"agent_id": self.registry_id, "active": self.active})
        self._status_changed()
        if self.consumer is not None:
            await self.consumer.stop(drain=True)

    async def stop(self) -> None:
        self._start_drain()
        assert self._drain_task is not None
        await self._drain_task
        self._stopping.set()
        if self._cancel_watch is not None:
            self._cancel_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cancel_watch
        if self._register_task is not None:
            self._register_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._register_task
        if self.registry is not None:
            if self.registered:
                try:
                    await self.registry.deregister()
                except RegistryError as exc:  # the sweeper marks us offline anyway
                    log.warning("deregistration failed", extra={"error": exc.message})
            await self.registry.close()
        for hook in self.agent.shutdown_hooks:
            await hook(self.resources)
        if self.bus is not None:
            await self.bus.close()
        if self._task_pool is not None:
            await self._task_pool.close()
        log.info("agent stopped", extra={"agent_id": self.registry_id})

    # -- requests ------------------------------------------------------------------------------

    def _context(self, request: AgentRequestEvent, via: Via) -> RequestContext:
        return RequestContext(
            request=request, agent_id=self.agent.agent_id, via=via, resources=self.resources
        )

    async def _execute(
        self, spec: HandlerSpec, payload: Any, request: AgentRequestEvent, via: Via
    ) -> AgentResponseEvent:
        """Run the handler in its own cancel scope; a dispatched task's work runs under its lease.

        Whatever ended the request (an answer, a timeout, a cancelled task), work it left running in a
        thread is told to stop when it is over: a command it started has its process group killed."""
        token = CancelToken()
        try:
            return await self.running.run(
                request, token, self._execute_in_scope(spec, payload, request, via, token)
            )
        finally:
            token.cancel("the request is over")

    async def _execute_in_scope(
        self, spec: HandlerSpec, payload: Any, request: AgentRequestEvent, via: Via, token: CancelToken
    ) -> AgentResponseEvent:
        ctx = self._context(request, via)
        task = TaskRef.from_metadata(request.metadata)
        if task is None or not self.settings.database_url:
            return await execute(self.agent, spec, payload, ctx)
        try:
            lease = TaskLease(await self._tasks_pool(), task, self.agent.agent_id)
            holds = await lease.start()
        except psycopg.OperationalError as exc:
            return task_error(
                request,
                self.agent.agent_id,
                f"database unreachable: {exc}",
                "unavailable",
                ErrorClass.RETRYABLE,
            )
        if not holds:
            not_held = f"task {task.task_id} attempt {task.attempt} is not held"
            return task_error(request, self.agent.agent_id, not_held, "task_not_held", ErrorClass.PERMANENT)
        response, lost = await run_leased(lease, token, lambda: execute(self.agent, spec, payload, ctx))
        if lost is not None:
            return task_error(request, self.agent.agent_id, lost, "cancelled", ErrorClass.PERMANENT)
        try:
            recorded = await lease.record(response)
        except psycopg.OperationalError as exc:
            # Not recorded: the lease runs out and the task is retried (at least once, fenced).
            log.warning("task outcome not recorded", extra={"task_id": task.task_id, "error": str(exc)})
        else:
            log.info(
                "task outcome",
                extra={"task_id": task.task_id, "attempt": task.attempt, "recorded": recorded},
            )
            await announce_outcome(self.bus, self.registry_id, request, task, recorded, response)
        return response  # type: ignore[no-any-return]

    async def _tasks_pool(self) -> AsyncConnectionPool:
        async with self._task_pool_lock:
            if self._task_pool is None:
                assert self.settings.database_url
                self._task_pool = await open_pool(
                    self.settings.database_url,
                    min_size=0,
                    max_size=2,
                    name=f"devtools-{self.registry_id}-tasks",
                )
            return self._task_pool

    async def _handle_bus_request(self, request: AgentRequestEvent) -> AgentResponseEvent:
        try:
            spec = check_request(self.agent, request, self.agent.agent_id)
            payload = parse_payload(spec, request)
        except RequestRejected as rejected:
            return rejection_response(request, self.agent.agent_id, rejected, "bus")
        if self.bus is not None and (reason := await self.bus.cancel_reason(request.request_id)):
            # Cancelled while it waited in the stream (or redelivered after a cancel): never started.
            why = f"cancelled by the requester: {reason}"
            return task_error(request, self.agent.agent_id, why, "cancelled", ErrorClass.PERMANENT)
        # The consumer bounds bus work only; wait here while HTTP requests hold the remaining slots.
        await self.slots.acquire()
        self._status_changed()
        try:
            return await self._execute(spec, payload, request, "bus")
        finally:
            self.slots.release()
            self._status_changed()

    async def _handle_http_request(self, request: AgentRequestEvent) -> AgentResponseEvent:
        if self.draining:
            raise HTTPException(503, f"agent {self.registry_id} is draining", {"Retry-After": "1"})
        try:
            spec = check_request(self.agent, request, self.agent.agent_id)
            payload = parse_payload(spec, request)
        except RequestRejected as rejected:
            raise HTTPException(
                rejected.http_status,
                {
                    "error": rejected.message,
                    "fields": rejected.fields,
                    "supported_request_types": self.agent.supported_types,
                },
            ) from None
        if not await self.slots.try_acquire():
            raise HTTPException(
                503, f"agent {self.registry_id} is at capacity ({self.agent.capacity})", {"Retry-After": "1"}
            )
        self._status_changed()
        try:
            response = await self._execute(spec, payload, request, "http")
        finally:
            self.slots.release()
            self._status_changed()
        if request.reply_to and self.bus is not None:
            # A caller that asked over HTTP but named a bus inbox gets the answer there too.
            await self.bus.respond_to_request(
                request,
                response.result,
                status=response.status,
                error=response.error,
                error_code=response.error_code,
                error_class=response.error_class,
                retry_after_seconds=response.retry_after_seconds,
            )
        return response

    # -- HTTP ----------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        status, active = self.status()
        extra: dict[str, Any] = {}
        for probe in self.health_probes:
            extra.update(await probe())
        return {
            "status": "draining" if self.draining else extra.pop("status", "healthy"),
            "agent_id": self.agent.agent_id,
            "replica_id": self.registry_id,
            "state": status,
            "active_requests": active,
            # Bus requests received and waiting for a slot held by HTTP requests.
            "queued_requests": self.slots.waiting,
            "capacity": self.agent.capacity,
            "registered": self.registered and self.registry is not None and self.registry.accepted,
            "request_types": self.agent.supported_types,
            "capabilities": self.agent.capability_names,
            **extra,
        }

    def _build_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = create_service_app(
            self.agent.name,
            lifespan=lifespan,
            health=self.health,
            metrics_access=MetricsAccess.from_settings(self.settings),
        )

        def authorize(http_request: Request) -> str:
            # Requests make agents run commands and change environments: the platform token is required
            # (checked before the body is even validated).
            return require_platform_caller(http_request, self.settings.api_token_value())

        @app.post("/agent-request", response_model=AgentResponseEvent, dependencies=[Depends(authorize)])
        async def agent_request(request: AgentRequestEvent) -> AgentResponseEvent:
            return await self._handle_http_request(request)

        return app


def run_agent(agent: AgentDefinition) -> None:
    """The whole `__main__` of an agent service: settings, backends, HTTP + bus, drain on SIGTERM."""
    from shared.backends import prepare_service_backends
    from shared.logging import configure_logging

    try:
        settings = load_settings()
        rt = AgentServiceSettings()
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    settings = prepare_service_backends(settings)
    try:
        service = AgentService(agent, settings, rt)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(service.app, settings.host, service.port, on_exit_signal=service.begin_drain)
