"""The agent-registry service as a real process over HTTP, on a real PostgreSQL and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
import redis

from services.agent_registry.store import SEARCH_ALL, next_status
from support.tests.agents.processes import (
    ADMIN_AUTH,
    PLATFORM_TOKEN,
    ServiceProcess,
    running_registry,
    wait_until,
)

pytestmark = pytest.mark.integration
# Module-scoped fixtures: one registry process for this module.
AUTH = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def register(reg: ServiceProcess, agent_id: str, caps: list[Any], **extra: Any) -> dict[str, Any]:
    body = {
        "agent_id": agent_id,
        "agent_name": agent_id,
        "base_url": f"http://127.0.0.1:1/{agent_id}",
        "capabilities": caps,
        "capacity": 4,
        **extra,
    }
    response = httpx.post(f"{reg.url}/register", json=body, headers=AUTH)
    assert response.status_code in (200, 201), response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def beat(reg: ServiceProcess, agent_id: str, token: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{reg.url}/agents/{agent_id}/heartbeat", json=body, headers=bearer(token))


def test_register_returns_token_and_agent_is_listed(registry: ServiceProcess) -> None:
    agent_id = _id("reviewer")
    data = register(
        registry,
        agent_id,
        ["code_review", {"name": "lint", "description": "ruff", "version": "2"}],
        tags=["python"],
        metadata={"team": "qa"},
    )
    assert data["created"] is True and len(data["token"]) >= 32
    agent = httpx.get(f"{registry.url}/agents/{agent_id}").json()
    assert agent["status"] == "idle"
    assert [c["name"] for c in agent["capabilities"]] == ["code_review", "lint"]
    assert agent["capabilities"][1]["version"] == "2"
    assert "token" not in agent and data["token"] not in json.dumps(agent)
    listed = httpx.get(f"{registry.url}/agents", params={"capability": "lint", "tag": "python"}).json()
    assert agent_id in [a["agent_id"] for a in listed]
    assert httpx.get(f"{registry.url}/agents", params={"tag": "nope-tag"}).json() == []
    again = httpx.post(
        f"{registry.url}/register",
        headers=AUTH,
        json={"agent_id": agent_id, "agent_name": "x", "base_url": f"http://127.0.0.1:1/{agent_id}"},
    )
    assert again.status_code == 200 and again.json()["created"] is False


def test_heartbeat_rules(registry: ServiceProcess) -> None:
    agent_id = _id("worker")
    token = register(registry, agent_id, ["build"])["token"]
    assert beat(registry, agent_id, token, status="busy", active_requests=4, seq=1).json()["status"] == "busy"
    # A heartbeat without a status never clears busy.
    kept = beat(registry, agent_id, token, active_requests=2, seq=2).json()
    assert kept["status"] == "busy" and kept["applied_status"] is False
    # An older (reordered) heartbeat refreshes liveness but never changes status.
    stale = beat(registry, agent_id, token, status="idle", seq=1).json()
    assert stale["status"] == "busy" and stale["applied_status"] is False
    assert beat(registry, agent_id, token, status="draining", seq=3).json()["status"] == "draining"
    assert beat(registry, agent_id, token, seq=4).json()["status"] == "draining"
    agent = httpx.get(f"{registry.url}/agents/{agent_id}").json()
    assert agent["active_requests"] == 2
    assert beat(registry, "never-registered", token, seq=1).status_code == 404


def test_next_status_rules() -> None:
    assert next_status("busy", None, 5, 1) == ("busy", False)
    assert next_status("draining", None, None, -1) == ("draining", False)
    assert next_status("busy", "idle", 1, 1) == ("busy", False)
    assert next_status("busy", "idle", 2, 1) == ("idle", True)
    assert next_status("offline", None, 0, -1) == ("idle", False)


def test_token_checks(registry: ServiceProcess) -> None:
    a, b = _id("a"), _id("b")
    token_a = register(registry, a, ["x"])["token"]
    token_b = register(registry, b, ["x"])["token"]
    body = {"agent_id": _id("c"), "agent_name": "c", "base_url": "http://127.0.0.1:1"}
    assert httpx.post(f"{registry.url}/register", json=body).status_code == 401
    forbidden = httpx.post(f"{registry.url}/register", json=body, headers=bearer(token_a))
    assert forbidden.status_code == 403 and "platform token" in forbidden.json()["error"]
    missing = httpx.post(f"{registry.url}/agents/{a}/heartbeat", json={})
    assert missing.status_code == 401 and "bearer" in missing.json()["error"]
    other = beat(registry, a, token_b, status="busy")
    assert other.status_code == 403 and b in other.json()["error"]
    assert beat(registry, a, "not-a-real-token").status_code == 401
    assert httpx.delete(f"{registry.url}/agents/{a}", headers=bearer(token_b)).status_code == 403
    assert httpx.delete(f"{registry.url}/agents/{a}").status_code == 401
    # The platform token, which every agent holds, registers agents but changes no one's record.
    taken = httpx.delete(f"{registry.url}/agents/{a}", headers=AUTH)
    assert taken.status_code == 403 and "DEVTOOLS_REGISTRY_ADMIN_TOKEN" in taken.json()["error"]
    assert beat(registry, a, PLATFORM_TOKEN).status_code == 403
    assert httpx.get(f"{registry.url}/agents/{a}").status_code == 200
    # Nobody moves a live agent to another base_url without that agent's token.
    hijack = {"agent_id": a, "agent_name": "evil", "base_url": "http://evil.example:80"}
    conflict = httpx.post(f"{registry.url}/register", json=hijack, headers=AUTH)
    assert conflict.status_code == 409
    conflict = httpx.post(f"{registry.url}/register", json=hijack, headers={**AUTH, "X-Agent-Token": token_b})
    assert conflict.status_code == 409
    assert httpx.get(f"{registry.url}/agents/{a}").json()["base_url"] == f"http://127.0.0.1:1/{a}"
    moved = httpx.post(f"{registry.url}/register", json=hijack, headers={**AUTH, "X-Agent-Token": token_a})
    assert moved.status_code == 200 and moved.json()["agent"]["base_url"] == "http://evil.example:80"


def test_the_admin_token_changes_any_record(registry: ServiceProcess) -> None:
    agent_id = _id("adm")
    register(registry, agent_id, ["x"])
    assert beat(registry, agent_id, ADMIN_AUTH["Authorization"].split()[1], status="busy").status_code == 200
    gone = httpx.delete(f"{registry.url}/agents/{agent_id}", headers=ADMIN_AUTH)
    assert gone.status_code == 200 and httpx.get(f"{registry.url}/agents/{agent_id}").status_code == 404
    assert httpx.delete(f"{registry.url}/agents/{agent_id}", headers=ADMIN_AUTH).status_code == 404


def test_deregistration(registry: ServiceProcess) -> None:
    agent_id = _id("gone")
    token = register(registry, agent_id, ["x"])["token"]
    response = httpx.delete(f"{registry.url}/agents/{agent_id}", headers=bearer(token))
    assert response.status_code == 200 and response.json()["deregistered"] is True
    assert httpx.get(f"{registry.url}/agents/{agent_id}").status_code == 404
    assert httpx.delete(f"{registry.url}/agents/{agent_id}", headers=bearer(token)).status_code == 404
    assert beat(registry, agent_id, token).status_code == 404


def _status_events(redis_url: str, prefix: str, agent_id: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = client.xrange(f"{prefix}:bus:events")
    finally:
        client.close()
    events = [json.loads(fields["data"]) for _, fields in entries if "data" in fields]
    return [
        e for e in events if e["event_type"] == "agent.status_change" and e["payload"]["agent_id"] == agent_id
    ]


def test_stale_agent_is_swept_offline_with_event(
    registry: ServiceProcess, redis_url: str, module_prefix: str
) -> None:
    agent_id = _id("stale")
    register(registry, agent_id, ["x"], heartbeat_interval_seconds=0.2)
    wait_until(
        lambda: httpx.get(f"{registry.url}/agents/{agent_id}").json()["status"] == "offline",
        what="sweep to offline",
    )
    health = httpx.get(f"{registry.url}/health/{agent_id}").json()
    assert health["alive"] is False and health["seconds_since_heartbeat"] >= 0.6
    events = wait_until(
        lambda: [
            e
            for e in _status_events(redis_url, module_prefix, agent_id)
            if e["payload"].get("status") == "offline"
        ],
        what="offline event",
    )
    assert events[0]["payload"]["previous_status"] == "idle"
    assert events[0]["payload"]["reason"] == "missed_heartbeats"
    changes = {e["payload"]["change"] for e in _status_events(redis_url, module_prefix, agent_id)}
    assert "registered" in changes
    assert agent_id not in [
        a["agent_id"]
        for a in httpx.get(
            f"{registry.url}/agents/search", params={"capabilities": "x", "match": "any", "limit": 1000}
        ).json()
    ]


def test_search_ranking_and_best_fit(registry: ServiceProcess) -> None:
    cap1, cap2 = _id("cap"), _id("cap")
    full, partial, loaded = _id("full"), _id("partial"), _id("loaded")
    register(registry, full, [cap1, cap2])
    register(registry, partial, [cap1])
    loaded_token = register(registry, loaded, [cap1, cap2])["token"]
    beat(registry, loaded, loaded_token, status="busy", active_requests=3, seq=1)

    both = f"{cap1},{cap2}"
    ranked = httpx.get(f"{registry.url}/agents/search", params={"capabilities": both}).json()
    assert [a["agent_id"] for a in ranked] == [full, loaded]
    assert ranked[0]["score"] > ranked[1]["score"]
    anyof = httpx.get(f"{registry.url}/agents/search", params={"capabilities": both, "match": "any"}).json()
    # Coverage 1/2 while idle (0.75) beats full coverage while busy at 3/4 load (0.71).
    assert [a["agent_id"] for a in anyof] == [full, partial, loaded]
    assert all(0 <= a["score"] <= 1 for a in anyof)

    best = httpx.get(f"{registry.url}/agents/best-fit", params={"capabilities": both}).json()
    assert best["agent_id"] == full
    full_token = httpx.post(
        f"{registry.url}/register",
        headers=AUTH,
        json={
            "agent_id": full,
            "agent_name": full,
            "base_url": f"http://127.0.0.1:1/{full}",
            "capabilities": [cap1, cap2],
            "capacity": 1,
        },
    ).json()["token"]
    beat(registry, full, full_token, status="busy", active_requests=1, seq=1)
    # Still first by score? No: busy at capacity drops it below the other busy agent with headroom.
    best = httpx.get(f"{registry.url}/agents/best-fit", params={"capabilities": both}).json()
    assert best["agent_id"] == loaded
    missing = httpx.get(f"{registry.url}/agents/best-fit", params={"capabilities": _id("nothing")})
    assert missing.status_code == 404 and "no live agent" in missing.json()["error"]


def test_search_uses_the_gin_index(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN " + SEARCH_ALL,
                {"wanted": ["a", "b"], "missed": 3, "limit": 5, "statuses": ["idle", "busy"]},
            )
        )
    assert "agent_registry_capability_names_gin" in plan


def test_health_and_metrics(registry: ServiceProcess) -> None:
    health = httpx.get(f"{registry.url}/health").json()
    assert health["status"] == "healthy" and health["database"] == "ok"
    assert httpx.get(f"{registry.url}/health/{_id('unknown')}").status_code == 404
    metrics = httpx.get(f"{registry.url}/metrics", headers=AUTH).text
    assert "devtools_registry_registrations_total" in metrics
    assert "devtools_http_requests_total" in metrics


def test_writes_refused_without_platform_token(module_env: dict[str, str], log_dir: Any) -> None:
    with running_registry(module_env, log_dir, DEVTOOLS_API_TOKEN="") as reg:
        body = {"agent_id": _id("x"), "agent_name": "x", "base_url": "http://127.0.0.1:1"}
        refused = httpx.post(f"{reg.url}/register", json=body)
        assert refused.status_code == 503 and "DEVTOOLS_API_TOKEN" in refused.json()["error"]
        assert httpx.get(f"{reg.url}/health").json()["writes"].startswith("refused")
        assert "DEVTOOLS_API_TOKEN is not set" in reg.log_text()


def _agents_gauge(reg: ServiceProcess) -> dict[str, float]:
    metrics = httpx.get(f"{reg.url}/metrics", headers=AUTH).text
    values = {}
    for line in metrics.splitlines():
        if line.startswith('devtools_registry_agents{status="'):
            labels, value = line.rsplit(" ", 1)
            values[labels.split('"')[1]] = float(value)
    return values


def test_metrics_count_agents_by_status(
    module_env: dict[str, str], log_dir: Any, make_database: Callable[..., str]
) -> None:
    # A registry of its own on an empty database, so the counts are exactly this test's agents.
    with running_registry({**module_env, "DEVTOOLS_DATABASE_URL": make_database()}, log_dir) as reg:
        assert _agents_gauge(reg) == {"idle": 0, "busy": 0, "draining": 0, "offline": 0}
        idle, busy, draining, gone = _id("idle"), _id("busy"), _id("draining"), _id("gone")
        tokens = {
            a: register(reg, a, ["x"], heartbeat_interval_seconds=3600)["token"]
            for a in (idle, busy, draining)
        }
        beat(reg, busy, tokens[busy], status="busy", seq=1)
        beat(reg, draining, tokens[draining], status="draining", seq=1)
        register(reg, gone, ["x"], heartbeat_interval_seconds=0.1)
        wait_until(lambda: httpx.get(f"{reg.url}/agents/{gone}").json()["status"] == "offline", what="swept")
        # Read from the database at each scrape: right after a change, with no sweep in between.
        assert _agents_gauge(reg) == {"idle": 1, "busy": 1, "draining": 1, "offline": 1}
        assert httpx.delete(f"{reg.url}/agents/{idle}", headers=bearer(tokens[idle])).status_code == 200
        assert _agents_gauge(reg) == {"idle": 0, "busy": 1, "draining": 1, "offline": 1}
