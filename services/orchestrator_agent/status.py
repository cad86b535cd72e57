"""GET_STATUS: this agent's own state (requests, LLM, task kinds), or another agent's from the registry."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

from services.orchestrator_agent.catalogue import Catalogue, default_catalogue
from services.orchestrator_agent.models import AgentStatusView, GetStatusPayload
from shared.agents import PermanentAgentError, RegistryClient, RegistryError

ORCHESTRATOR_AGENT_ID = "orchestrator"


class UnknownAgent(PermanentAgentError, LookupError):
    """The registry has no agent with that id: the caller named it (`unknown_agent`, permanent)."""

    code = "unknown_agent"


class AgentActivity:
    """What this process has done since it started; the handlers record each request they serve."""

    def __init__(self, agent_id: str = ORCHESTRATOR_AGENT_ID, llm: str = "none") -> None:
        self.agent_id = agent_id
        self.llm = llm
        self.started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self._handled: Counter[str] = Counter()
        self._lock = threading.Lock()  # handlers may run in worker threads

    def record(self, request_type: str) -> None:
        with self._lock:
            self._handled[request_type] += 1

    def handled(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._handled.items()))

    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self._started, 3)


async def get_status(
    payload: GetStatusPayload,
    *,
    activity: AgentActivity,
    registry: RegistryClient | None = None,
    catalogue: Catalogue | None = None,
) -> AgentStatusView:
    if payload.agent_id and payload.agent_id != activity.agent_id:
        if registry is None:
            raise UnknownAgent(f"agent_id: cannot look up {payload.agent_id!r}: no registry configured")
        record = await registry.get_agent(payload.agent_id)
        if record is None:
            raise UnknownAgent(f"agent_id: the registry has no agent {payload.agent_id!r}")
        return AgentStatusView(
            agent_id=payload.agent_id, status=str(record["status"]), source="registry", registry=record
        )
    own = None
    if registry is not None:
        try:
            own = await registry.get_agent(activity.agent_id)
        except RegistryError:  # our own status must not depend on the registry being up
            own = None
    return AgentStatusView(
        agent_id=activity.agent_id,
        status=str(own["status"]) if own else "running",
        source="self",
        llm=activity.llm,
        task_kinds=sorted((catalogue or default_catalogue()).kinds),
        requests_handled=activity.handled(),
        started_at=activity.started_at,
        uptime_seconds=activity.uptime_seconds(),
        registry=own,
    )
