"""Bad input to the registry and to an agent always gets a 4xx with a message, never a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.tests.agents.processes import (
    AGENT_AUTH,
    PLATFORM_TOKEN,
    ServiceProcess,
)

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def agent_token(registry: ServiceProcess) -> tuple[str, str]:
    agent_id = f"bad-{uuid.uuid4().hex[:6]}"
    body = {"agent_id": agent_id, "agent_name": "b", "base_url": "http://127.0.0.1:1"}
    return agent_id, httpx.post(f"{registry.url}/register", json=body, headers=AUTH).json()["token"]


def _chunks(size: int) -> Iterator[bytes]:
    yield b'{"agent_id": "x", "metadata": {"blob": "'
    for _ in range(size // 65536):
        yield b"a" * 65536
    yield b'"}}'


def registry_cases(agent_id: str, token: str) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(method, path, request kwargs, expected status, a word the message must contain)."""
    own = {"Authorization": f"Bearer {token}"}
    ok = {"agent_id": "fine-id", "agent_name": "n", "base_url": "http://127.0.0.1:1"}
    beat = f"/agents/{agent_id}/heartbeat"
    return [
        (
            "POST",
            "/register",
            {"content": b'{"agent_id": ', "headers": {**AUTH, **JSON}},
            400,
            "malformed JSON",
        ),
        ("POST", "/register", {"content": b"not json at all", "headers": {**AUTH, **JSON}}, 400, "JSON"),
        ("POST", "/register", {"json": [1, 2], "headers": AUTH}, 422, "body"),
        ("POST", "/register", {"json": {**ok, "capacity": "lots"}, "headers": AUTH}, 422, "capacity"),
        ("POST", "/register", {"json": {**ok, "capacity": 0}, "headers": AUTH}, 422, "capacity"),
        ("POST", "/register", {"json": {**ok, "capabilities": [1]}, "headers": AUTH}, 422, "capabilities"),
        (
            "POST",
            "/register",
            {"json": {**ok, "capabilities": [{"name": "bad name!"}]}, "headers": AUTH},
            422,
            "capabilities",
        ),
        ("POST", "/register", {"json": {**ok, "agent_id": "../etc"}, "headers": AUTH}, 422, "agent_id"),
        (
            "POST",
            "/register",
            {"json": {**ok, "base_url": "ftp://x.example"}, "headers": AUTH},
            422,
            "base_url",
        ),
        ("POST", "/register", {"json": {**ok, "surprise": 1}, "headers": AUTH}, 422, "surprise"),
        ("POST", "/register", {"json": {"agent_name": "n"}, "headers": AUTH}, 422, "agent_id"),
        (
            "POST",
            "/register",
            {"json": {**ok, "metadata": {"blob": "a" * 300_000}}, "headers": AUTH},
            413,
            "too large",
        ),
        ("POST", "/register", {"content": _chunks(400_000), "headers": {**AUTH, **JSON}}, 413, "too large"),
        ("POST", beat, {"json": {"status": "sleepy"}, "headers": own}, 422, "status"),
        ("POST", beat, {"json": {"seq": -1}, "headers": own}, 422, "seq"),
        ("POST", beat, {"json": {"active_requests": "2x"}, "headers": own}, 422, "active_requests"),
        ("POST", beat, {"content": b"{", "headers": {**own, **JSON}}, 400, "malformed JSON"),
        ("POST", "/agents/no-such-agent/heartbeat", {"json": {}, "headers": own}, 404, "no-such-agent"),
        ("DELETE", "/agents/no-such-agent", {"headers": AUTH}, 404, "no-such-agent"),
        ("GET", "/agents/no-such-agent", {}, 404, "no-such-agent"),
        ("GET", "/health/no-such-agent", {}, 404, "no-such-agent"),
        ("GET", "/agents", {"params": {"status": "sleepy"}}, 422, "status"),
        ("GET", "/agents", {"params": {"limit": "many"}}, 422, "limit"),
        ("GET", "/agents/search", {}, 422, "capabilities"),
        ("GET", "/agents/search", {"params": {"capabilities": " , ,"}}, 422, "capabilities"),
        ("GET", "/agents/search", {"params": {"capabilities": "x", "match": "some"}}, 422, "match"),
        ("GET", "/agents/best-fit", {"params": {"capabilities": "x", "match": "some"}}, 422, "match"),
        *unstorable_cases(agent_id, token),
    ]


def _raw(document: bytes) -> dict[str, Any]:
    return {"content": document, "headers": {**AUTH, **JSON}}


def unstorable_cases(agent_id: str, token: str) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """Values PostgreSQL cannot store (a bigint overflow, NUL, lone surrogates, NaN): 422, not 500."""
    own = {"Authorization": f"Bearer {token}"}
    ok = {"agent_id": "fine-id", "agent_name": "n", "base_url": "http://127.0.0.1:1"}
    beat = f"/agents/{agent_id}/heartbeat"
    nul = "a\u0000b"
    prefix = b'{"agent_id": "fine-id", "agent_name": "n", "base_url": "http://127.0.0.1:1", '
    return [
        ("POST", beat, {"json": {"seq": 2**63}, "headers": own}, 422, "seq"),
        ("POST", beat, {"json": {"seq": 10**30}, "headers": own}, 422, "seq"),
        ("POST", beat, {"json": {"active_requests": 2**63}, "headers": own}, 422, "active_requests"),
        ("POST", "/register", {"json": {**ok, "capacity": 2**31}, "headers": AUTH}, 422, "capacity"),
        ("POST", "/register", {"json": {**ok, "agent_name": nul}, "headers": AUTH}, 422, "agent_name"),
        (
            "POST",
            "/register",
            {"json": {**ok, "base_url": f"http://{nul}"}, "headers": AUTH},
            422,
            "base_url",
        ),
        ("POST", "/register", {"json": {**ok, "tags": ["ok", nul]}, "headers": AUTH}, 422, "tags.1"),
        ("POST", "/register", {"json": {**ok, "metadata": {"k": [nul]}}, "headers": AUTH}, 422, "metadata"),
        ("POST", "/register", {"json": {**ok, "metadata": {nul: 1}}, "headers": AUTH}, 422, "metadata"),
        (
            "POST",
            "/register",
            {"json": {**ok, "capabilities": [{"name": "c", "description": nul}]}, "headers": AUTH},
            422,
            "description",
        ),
        (
            "POST",
            "/register",
            {"json": {**ok, "capabilities": [{"name": "c", "version": nul}]}, "headers": AUTH},
            422,
            "version",
        ),
        ("POST", "/register", {"json": {**ok, "capabilities": [nul]}, "headers": AUTH}, 422, "capabilities"),
        ("POST", "/register", _raw(prefix + b'"metadata": {"x": NaN}}'), 422, "NaN"),
        ("POST", "/register", _raw(prefix + b'"metadata": {"x": -Infinity}}'), 422, "metadata"),
        ("POST", "/register", _raw(prefix + b'"metadata": {"x": "\\ud800"}}'), 422, "surrogate"),
        ("POST", "/register", _raw(prefix + b'"agent_name": "\\udc00"}'), 422, "agent_name"),
        (
            "POST",
            "/register",
            _raw(prefix + b'"metadata": {"x": ' + b"[" * 200 + b"]" * 200 + b"}}"),
            422,
            "deeper",
        ),
        ("GET", "/agents/a%00b", {}, 422, "agent_id"),
        ("GET", "/health/a%00b", {}, 422, "agent_id"),
        ("DELETE", "/agents/a%00b", {"headers": AUTH}, 422, "agent_id"),
        ("POST", "/agents/a%00b/heartbeat", {"json": {}, "headers": own}, 422, "agent_id"),
        ("GET", "/agents", {"params": {"tag": nul}}, 422, "tag"),
        ("GET", "/agents", {"params": {"capability": nul}}, 422, "capability"),
        ("GET", "/agents/search", {"params": {"capabilities": f"x,{nul}"}}, 422, "capabilities"),
        ("GET", "/agents/best-fit", {"params": {"capabilities": nul}}, 422, "capabilities"),
    ]


def _assert_clear_4xx(response: httpx.Response, expected: int, word: str, what: str) -> None:
    assert response.status_code == expected, f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], f"{what}: no message: {body}"
    assert word.lower() in json.dumps(body).lower(), f"{what}: message does not mention {word!r}: {body}"


def test_registry_rejects_bad_input_with_a_message(
    registry: ServiceProcess, agent_token: tuple[str, str]
) -> None:
    with httpx.Client(base_url=registry.url, timeout=10) as client:
        for method, path, kwargs, expected, word in registry_cases(*agent_token):
            response = client.request(method, path, **kwargs)
            _assert_clear_4xx(response, expected, word, f"{method} {path} {str(kwargs)[:80]}")
        assert client.get("/health").json()["status"] == "healthy"
        # Nothing of the refused registrations was stored.
        assert client.get("/agents/fine-id").status_code == 404


def test_agent_rejects_bad_input_with_a_message(echo: ServiceProcess) -> None:
    ok = {"source_agent": "tests", "target_agent": "echo", "request_type": "ECHO", "payload": {"text": "x"}}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"content": b'{"source_agent": ', "headers": JSON}, 400, "malformed JSON"),
        ({"json": "just a string"}, 422, "body"),
        ({"json": {**ok, "priority": "mega"}}, 422, "priority"),
        ({"json": {**ok, "timeout_seconds": -1}}, 422, "timeout_seconds"),
        ({"json": {**ok, "timeout_seconds": 1e12}}, 422, "timeout_seconds"),
        ({"json": {**ok, "created_at": "9999-12-31T23:59:00Z"}}, 422, "created_at"),
        ({"json": {**ok, "payload": "not an object"}}, 422, "payload"),
        ({"json": {**ok, "payload": {"text": "x", "repeat": 99}}}, 422, "payload.repeat"),
        ({"json": {**ok, "target_agent": "any"}}, 422, "required_capability"),
        ({"json": {**ok, "target_agent": "any", "required_capability": "cooking"}}, 400, "cooking"),
        ({"json": {**ok, "request_type": "DANCE"}}, 400, "supported"),
        ({"json": {**ok, "payload": {"text": "a" * 2_000_000}}}, 413, "too large"),
    ]
    with httpx.Client(base_url=echo.url, timeout=10, headers=AGENT_AUTH) as client:
        for kwargs, expected, word in cases:
            response = client.post("/agent-request", **kwargs)
            _assert_clear_4xx(response, expected, word, f"agent-request {str(kwargs)[:80]}")
        assert client.get("/health").json()["status"] == "healthy"


def test_agent_requests_need_the_platform_token(echo: ServiceProcess) -> None:
    ok = {"source_agent": "tests", "target_agent": "echo", "request_type": "ECHO", "payload": {"text": "x"}}
    with httpx.Client(base_url=echo.url, timeout=10) as client:
        missing = client.post("/agent-request", json=ok)
        assert missing.status_code == 401 and "bearer token" in missing.text
        wrong = client.post("/agent-request", json=ok, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and "invalid bearer token" in wrong.text
        # Checked before the body: an unauthenticated caller learns nothing about the request format.
        assert client.post("/agent-request", json={"nonsense": 1}).status_code == 401
        assert client.post("/agent-request", json=ok, headers=AGENT_AUTH).json()["status"] == "success"
