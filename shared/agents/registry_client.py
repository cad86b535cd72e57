"""Client of the agent-registry service: register, heartbeats, deregister, cached discovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from shared.config import Settings

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 10.0
# Load reported with each heartbeat: (status or None to leave it, active request count).
StatusProvider = Callable[[], tuple[str | None, int]]


class RegistryError(RuntimeError):
    """The registry answered with an error (the message is the registry's own)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"registry {status_code}: {message}")
        self.status_code = status_code
        self.message = message


class RegistryUnavailable(RegistryError):
    """The registry could not be reached."""


@dataclass
class AgentRegistration:
    agent_id: str
    agent_name: str
    base_url: str
    capabilities: list[dict[str, str] | str] = field(default_factory=list)
    capacity: int = 1
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval_seconds: float = DEFAULT_HEARTBEAT_INTERVAL

    def body(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "base_url": self.base_url,
            "capabilities": self.capabilities,
            "capacity": self.capacity,
            "tags": self.tags,
            "metadata": self.metadata,
            "heartbeat_interval_seconds": self.heartbeat_interval_seconds,
        }


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        *,
        platform_token: str | None = None,
        timeout: float = 5.0,
        cache_ttl: float = 2.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.platform_token = platform_token
        self.cache_ttl = cache_ttl
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._registration: AgentRegistration | None = None
        self._agent_token: str | None = None
        self._seq = 0
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.registrations = 0  # how many times this client (re-)registered
        # Whether the registry takes our record as ours: registered, and our last heartbeat was not
        # refused (a registry we cannot reach leaves it as it was: we do not know better).
        self.accepted = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RegistryClient:
        return cls(settings.resolved_registry_url, platform_token=settings.api_token_value(), **kwargs)

    @property
    def agent_token(self) -> str | None:
        return self._agent_token

    async def _call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(0, f"{self.base_url} unreachable: {exc}") from exc

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            message = str(response.json().get("error", response.text))
        except ValueError:
            message = response.text
        raise RegistryError(response.status_code, message)

    async def register(self, registration: AgentRegistration) -> dict[str, Any]:
        """Register (or re-register) and keep the per-agent token for heartbeats and deregistration."""
        response = await self._call("POST", "/register", token=self.platform_token, json=registration.body())
        self._raise_for(response)
        data = response.json()
        self._registration = registration
        self._agent_token = data["token"]
        self.accepted = True
        self._seq = 0
        self.registrations += 1
        log.info("registered with the registry", extra={"agent_id": registration.agent_id})
        return dict(data["agent"])

    async def heartbeat(
        self, status: str | None = None, active_requests: int | None = None, *, _retry: bool = True
    ) -> dict[str, Any]:
        """One heartbeat; a 404 (the registry forgot us) re-registers and beats again, once."""
        reg = self._require_registration()
        body: dict[str, Any] = {"seq": self._seq}
        if status is not None:
            body["status"] = status
        if active_requests is not None:
            body["active_requests"] = active_requests
        self._seq += 1
        response = await self._call(
            "POST", f"/agents/{reg.agent_id}/heartbeat", token=self._agent_token, json=body
        )
        if response.status_code in (401, 403, 404) and _retry:
            # Forgotten (404), or our token no longer opens our record (someone re-registered it): the
            # record is ours to take back with the platform token, and the new token replaces theirs.
            why = "does not know this agent" if response.status_code == 404 else "refused this agent's token"
            log.warning(f"registry {why}: re-registering", extra={"agent_id": reg.agent_id})
            try:
                await self.register(reg)
            except RegistryError:
                self.accepted = False
                raise
            return await self.heartbeat(status, active_requests, _retry=False)
        if response.status_code in (401, 403, 404):
            self.accepted = False
        self._raise_for(response)
        self.accepted = True
        return dict(response.json())

    def start_heartbeats(self, status_provider: StatusProvider, interval: float | None = None) -> None:
        reg = self._require_registration()
        every = interval if interval is not None else reg.heartbeat_interval_seconds
        self._stop.clear()
        self._heartbeat_task = asyncio.create_task(self._beat(status_provider, every), name="heartbeats")

    async def _beat(self, status_provider: StatusProvider, every: float) -> None:
        while not self._stop.is_set():
            status, active = status_provider()
            try:
                await self.heartbeat(status, active)
            except RegistryError as exc:  # keep beating: the registry may come back
                log.warning("heartbeat failed", extra={"error": exc.message, "code": exc.status_code})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=every)
            self._wake.clear()

    def kick(self) -> None:
        """Send the next heartbeat now (status just changed, e.g. the agent became busy or draining)."""
        self._wake.set()

    async def stop_heartbeats(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._heartbeat_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None

    async def deregister(self) -> bool:
        """Stop heartbeating and remove our record; False if the registry had already forgotten us."""
        await self.stop_heartbeats()
        reg = self._require_registration()
        response = await self._call("DELETE", f"/agents/{reg.agent_id}", token=self._agent_token)
        if response.status_code == 404:
            return False
        self._raise_for(response)
        return True

    async def _cached_get(self, key: tuple[str, ...], path: str, params: dict[str, Any]) -> Any:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_ttl:
            return hit[1]
        response = await self._call("GET", path, params=params)
        if response.status_code == 404:
            value: Any = None
        else:
            self._raise_for(response)
            value = response.json()
        self._cache[key] = (now, value)
        return value

    def invalidate_cache(self) -> None:
        """Forget cached search and best-fit answers (e.g. after the chosen agent turned out gone)."""
        self._cache.clear()

    async def search(
        self, capabilities: list[str], match: str = "all", limit: int = 20
    ) -> list[dict[str, Any]]:
        """Live agents offering the capabilities, best first (cached for cache_ttl seconds)."""
        caps = ",".join(sorted(capabilities))
        params = {"capabilities": caps, "match": match, "limit": limit}
        return list(
            await self._cached_get(("search", caps, match, str(limit)), "/agents/search", params) or []
        )

    async def best_fit(self, capabilities: list[str], match: str = "all") -> dict[str, Any] | None:
        """The one agent to send work to, or None when no live agent offers the capabilities."""
        caps = ",".join(sorted(capabilities))
        params = {"capabilities": caps, "match": match}
        return await self._cached_get(("best", caps, match), "/agents/best-fit", params)

    async def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        # Quoted: an id is one path segment whatever it holds ("/", "?", control characters).
        response = await self._call("GET", f"/agents/{quote(agent_id, safe='')}")
        if response.status_code == 404:
            return None
        self._raise_for(response)
        return dict(response.json())

    async def list_agents(self, **filters: str) -> list[dict[str, Any]]:
        response = await self._call("GET", "/agents", params=filters)
        self._raise_for(response)
        return list(response.json())

    async def close(self) -> None:
        await self.stop_heartbeats()
        await self._http.aclose()

    def _require_registration(self) -> AgentRegistration:
        if self._registration is None:
            raise RuntimeError("register() first")
        return self._registration
