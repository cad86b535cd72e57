"""The agent-registry HTTP API (FastAPI app factory). Endpoints are documented in docs/AGENT_REGISTRY.md."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from prometheus_client import Counter, Gauge

from services.agent_registry.events import REGISTRY_AGENT_ID, RegistryEvents
from services.agent_registry.models import (
    AgentStatus,
    AgentView,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from services.agent_registry.settings import RegistrySettings
from services.agent_registry.store import (
    LIVE_STATUSES,
    RegistrationConflict,
    RegistryStore,
    hash_token,
)
from services.agent_registry.sweeper import Sweeper
from shared.config import Settings
from shared.db import open_pool
from shared.http import (
    MetricsAccess,
    StorableStr,
    bearer_token,
    create_service_app,
    require_bearer,
    tokens_equal,
)

log = logging.getLogger(__name__)

REGISTRATIONS = Counter("devtools_registry_registrations_total", "Agent registrations", ["outcome"])
HEARTBEATS = Counter("devtools_registry_heartbeats_total", "Agent heartbeats", ["outcome"])
DEREGISTRATIONS = Counter("devtools_registry_deregistrations_total", "Agents deregistered")
# Read from the database at each scrape: every registry replica reports the same totals.
AGENTS = Gauge("devtools_registry_agents", "Registered agents by status", ["status"])
AGENT_TOKEN_HEADER = "x-agent-token"
# Ids that cannot be stored cannot exist either: a 422 naming agent_id, before any SQL runs.
AgentIdPath = Annotated[StorableStr, Path(max_length=200)]


class RegistryState:
    """What the request handlers share: the store, the bus publisher, the sweeper, the platform token."""

    def __init__(self, settings: Settings, reg: RegistrySettings) -> None:
        self.settings = settings
        self.reg = reg
        self.platform_token = settings.api_token_value() or None
        self.store: RegistryStore | None = None
        self.events = RegistryEvents(None)
        self.sweeper: Sweeper | None = None
        self.bus: Any | None = None

    def require_store(self) -> RegistryStore:
        assert self.store is not None, "registry not started"
        return self.store

    def writes_allowed(self) -> None:
        if self.platform_token is None and not self.reg.insecure_dev:
            raise HTTPException(
                503,
                "registry refuses writes: DEVTOOLS_API_TOKEN is not set "
                "(set it, or DEVTOOLS_REGISTRY_INSECURE_DEV=1 for local development only)",
            )

    def is_platform(self, token: str | None) -> bool:
        return tokens_equal(token, self.platform_token)

    def is_admin(self, token: str | None) -> bool:
        admin = self.reg.admin_token.get_secret_value() if self.reg.admin_token else None
        return tokens_equal(token, admin)


async def _start_bus(settings: Settings) -> Any | None:
    try:
        from shared.bus import EventBus
    except ImportError as exc:
        log.warning("event bus unavailable; registry events are not published", extra={"error": str(exc)})
        return None
    bus = EventBus.from_settings(settings, agent_id=REGISTRY_AGENT_ID)
    await bus.start()
    return bus


def create_app(settings: Settings, reg: RegistrySettings | None = None) -> FastAPI:
    reg = reg or RegistrySettings()
    state = RegistryState(settings, reg)
    if state.platform_token is None:
        level = "INSECURE DEV MODE: writes need no platform token" if reg.insecure_dev else "writes refused"
        log.warning(f"DEVTOOLS_API_TOKEN is not set: {level}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url, "the registry needs DEVTOOLS_DATABASE_URL (resolved by the launcher)"
        pool = await open_pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            name="agent-registry",
        )
        state.store = RegistryStore(pool)
        state.bus = await _start_bus(settings) if settings.redis_url else None
        state.events = RegistryEvents(state.bus)
        state.sweeper = Sweeper(
            state.store,
            state.events,
            interval=reg.sweep_interval_seconds,
            missed_heartbeats=reg.missed_heartbeats,
        )
        state.sweeper.start()
        try:
            yield
        finally:
            await state.sweeper.stop()
            if state.bus is not None:
                await state.bus.close()
            await pool.close()

    async def health() -> dict[str, Any]:
        store = state.require_store()
        try:
            counts = await store.counts()
            db_ok = True
        except Exception as exc:
            counts, db_ok = {}, False
            log.warning("health: database check failed", extra={"error": str(exc)})
        return {
            "status": "healthy" if db_ok else "unhealthy",
            "service": REGISTRY_AGENT_ID,
            "database": "ok" if db_ok else "down",
            "bus": "connected" if state.bus is not None else "disabled",
            "writes": "enabled" if state.platform_token or reg.insecure_dev else "refused (no API token)",
            "agents": counts,
        }

    async def refresh_agent_gauge() -> None:
        counts = await state.require_store().counts()
        for status in get_args(AgentStatus):
            AGENTS.labels(status).set(counts.get(status, 0))

    app = create_service_app(
        "agent-registry",
        lifespan=lifespan,
        health=health,
        max_body_bytes=reg.max_body_bytes,
        on_metrics=refresh_agent_gauge,
        metrics_access=MetricsAccess.from_settings(settings),
    )
    app.state.registry = state
    _routes(app, state)
    return app


async def _authorize_agent(request: Request, state: RegistryState, agent_id: str) -> None:
    """The agent's own token (or the admin token) may write its record: 401 / 403 / 404 otherwise. The
    platform token, which every agent process holds, registers agents but changes no one's record."""
    token = require_bearer(request)
    if state.is_admin(token):
        if await state.require_store().token_hash(agent_id) is None:
            raise HTTPException(404, f"unknown agent {agent_id!r}: register it first")
        return
    store = state.require_store()
    stored = await store.token_hash(agent_id)
    if stored is None:
        raise HTTPException(404, f"unknown agent {agent_id!r}: register it first")
    if hash_token(token) == stored:
        return
    if state.is_platform(token):
        raise HTTPException(
            403,
            f"the platform token does not change agent {agent_id!r}'s record: use that agent's own token "
            "or the registry's admin token (DEVTOOLS_REGISTRY_ADMIN_TOKEN)",
        )
    owner = await store.owner_of_token(token)
    if owner is not None:
        raise HTTPException(403, f"this token belongs to agent {owner!r}, not {agent_id!r}")
    raise HTTPException(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})


def _wanted(capabilities: str) -> list[str]:
    names = sorted({c.strip() for c in capabilities.split(",") if c.strip()})
    if not names:
        raise HTTPException(
            422,
            {
                "error": "invalid request: capabilities",
                "fields": [
                    {"field": "capabilities", "message": "give at least one capability name, comma-separated"}
                ],
            },
        )
    return names


# Comma-separated capability names, checked as storable text (a 422 rather than a driver error).
CapabilitiesQuery = Annotated[
    StorableStr, Query(max_length=4000, description="comma-separated capability names")
]


def _routes(app: FastAPI, state: RegistryState) -> None:
    @app.post("/register", response_model=RegisterResponse, status_code=201)
    async def register(body: RegisterRequest, request: Request, response: Response) -> RegisterResponse:
        state.writes_allowed()
        token = bearer_token(request)
        if state.platform_token is not None:
            if token is None:
                raise HTTPException(401, "missing bearer token: registering needs the platform token")
            if not state.is_platform(token):
                raise HTTPException(403, "registering needs the platform token (DEVTOOLS_API_TOKEN)")
        agent_token = secrets.token_urlsafe(32)
        try:
            reg = await state.require_store().register(
                body, agent_token, request.headers.get(AGENT_TOKEN_HEADER)
            )
        except RegistrationConflict as exc:
            REGISTRATIONS.labels("conflict").inc()
            raise HTTPException(409, str(exc)) from None
        REGISTRATIONS.labels("created" if reg.created else "updated").inc()
        if not reg.created:
            response.status_code = 200
        caps = reg.row["capability_names"]
        await state.events.publish(
            "registered", body.agent_id, capabilities=caps, base_url=body.base_url, created=reg.created
        )
        if reg.capabilities_changed:
            await state.events.publish("capabilities_changed", body.agent_id, capabilities=caps)
        await state.events.status_changed(body.agent_id, reg.previous_status, "idle", reason="registered")
        log.info("agent registered", extra={"agent_id": body.agent_id, "new_agent": reg.created})
        return RegisterResponse(agent=AgentView.from_row(reg.row), token=agent_token, created=reg.created)

    @app.post("/agents/{agent_id}/heartbeat", response_model=HeartbeatResponse)
    async def heartbeat(agent_id: AgentIdPath, body: HeartbeatRequest, request: Request) -> HeartbeatResponse:
        state.writes_allowed()
        await _authorize_agent(request, state, agent_id)
        outcome = await state.require_store().heartbeat(agent_id, body)
        if outcome is None:  # deregistered between the token check and the update
            HEARTBEATS.labels("unknown").inc()
            raise HTTPException(404, f"unknown agent {agent_id!r}: register it first")
        HEARTBEATS.labels("applied" if outcome.applied_status else "liveness").inc()
        status = outcome.row["status"]
        await state.events.status_changed(agent_id, outcome.previous_status, status, reason="heartbeat")
        return HeartbeatResponse(
            agent_id=agent_id,
            status=status,
            applied_status=outcome.applied_status,
            heartbeat_interval_seconds=outcome.row["heartbeat_interval_seconds"],
        )

    @app.delete("/agents/{agent_id}")
    async def deregister(agent_id: AgentIdPath, request: Request) -> dict[str, Any]:
        state.writes_allowed()
        await _authorize_agent(request, state, agent_id)
        row = await state.require_store().deregister(agent_id)
        if row is None:
            raise HTTPException(404, f"unknown agent {agent_id!r}")
        DEREGISTRATIONS.inc()
        await state.events.publish("deregistered", agent_id, previous_status=row["status"])
        return {"agent_id": agent_id, "deregistered": True}

    @app.get("/agents", response_model=list[AgentView])
    async def list_agents(
        status: AgentStatus | None = None,
        capability: Annotated[StorableStr | None, Query(max_length=128)] = None,
        tag: Annotated[StorableStr | None, Query(max_length=100)] = None,
        limit: int = Query(200, ge=1, le=1000),
    ) -> list[AgentView]:
        rows = await state.require_store().list(status, capability, tag, limit)
        return [AgentView.from_row(r) for r in rows]

    async def _search(capabilities: str, match: str, limit: int) -> list[dict[str, Any]]:
        return await state.require_store().search(
            _wanted(capabilities), match == "all", state.reg.missed_heartbeats, limit, LIVE_STATUSES
        )

    @app.get("/agents/search", response_model=list[AgentView])
    async def search(
        capabilities: CapabilitiesQuery,
        match: Literal["all", "any"] = "all",
        limit: int = Query(20, ge=1, le=1000),
    ) -> list[AgentView]:
        return [AgentView.from_row(r) for r in await _search(capabilities, match, limit)]

    @app.get("/agents/best-fit", response_model=AgentView)
    async def best_fit(capabilities: CapabilitiesQuery, match: Literal["all", "any"] = "all") -> AgentView:
        rows = await _search(capabilities, match, state.reg.search_limit)
        # Ranked by the database; prefer the best one that still has headroom.
        with_room = [r for r in rows if r["active_requests"] < r["capacity"] and r["status"] == "idle"]
        chosen = (with_room or rows or [None])[0]
        if chosen is None:
            raise HTTPException(404, f"no live agent offers {match} of: {capabilities}")
        return AgentView.from_row(chosen)

    @app.get("/agents/{agent_id}", response_model=AgentView)
    async def get_agent(agent_id: AgentIdPath) -> AgentView:
        row = await state.require_store().get(agent_id)
        if row is None:
            raise HTTPException(404, f"unknown agent {agent_id!r}")
        return AgentView.from_row(row)

    @app.get("/health/{agent_id}")
    async def agent_health(agent_id: AgentIdPath) -> dict[str, Any]:
        row = await state.require_store().get(agent_id)
        if row is None:
            raise HTTPException(404, f"unknown agent {agent_id!r}")
        age = (datetime.now(UTC) - row["last_heartbeat"]).total_seconds()
        return {
            "agent_id": agent_id,
            "status": row["status"],
            "alive": row["status"] != "offline",
            "seconds_since_heartbeat": round(age, 3),
            "heartbeat_interval_seconds": row["heartbeat_interval_seconds"],
            "offline_after_seconds": row["heartbeat_interval_seconds"] * state.reg.missed_heartbeats,
            "active_requests": row["active_requests"],
            "capacity": row["capacity"],
        }
