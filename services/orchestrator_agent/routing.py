"""ROUTE_REQUEST: the registry's best-fit live agent for a set of capabilities (or a request type)."""

from __future__ import annotations

import logging

from services.orchestrator_agent.catalogue import Catalogue, default_catalogue
from services.orchestrator_agent.models import RouteRequestPayload, RouteResult
from shared.agents import RegistryClient, RegistryError, RegistryUnavailable, RetryableAgentError

log = logging.getLogger(__name__)


class NoAgentAvailable(RetryableAgentError, LookupError):
    """No live agent offers the capabilities (the registry has none, or all are offline): worth asking
    again once one registers (`no_live_agent`, retryable), never an unexplained `internal` error."""

    code = "no_live_agent"


class RoutingError(ValueError):
    """The request cannot be routed as asked (an unknown request type)."""


def capabilities_for(payload: RouteRequestPayload, catalogue: Catalogue) -> list[str]:
    wanted = list(dict.fromkeys(payload.capabilities))
    if payload.request_type:
        serving = [cap for cap, types in catalogue.capabilities.items() if payload.request_type in types]
        if not serving:
            raise RoutingError(f"request_type: no capability serves {payload.request_type!r}")
        wanted += [cap for cap in serving if cap not in wanted]
    return wanted


async def route_request(
    payload: RouteRequestPayload, registry: RegistryClient, *, catalogue: Catalogue | None = None
) -> RouteResult:
    wanted = capabilities_for(payload, catalogue or default_catalogue())
    try:
        agent = await registry.best_fit(wanted, match=payload.match)
    except RegistryUnavailable:
        raise
    except RegistryError as exc:
        raise RoutingError(f"the registry refused the search: {exc.message}") from exc
    if agent is None:
        raise NoAgentAvailable(f"no live agent offers {payload.match} of: {', '.join(wanted)}")
    log.info("request routed", extra={"agent_id": agent["agent_id"], "capabilities": wanted})
    return RouteResult(
        agent_id=agent["agent_id"],
        agent_name=agent["agent_name"],
        base_url=agent["base_url"],
        capabilities=[c["name"] if isinstance(c, dict) else str(c) for c in agent["capabilities"]],
        requested=wanted,
        status=agent["status"],
        active_requests=agent["active_requests"],
        capacity=agent["capacity"],
    )
