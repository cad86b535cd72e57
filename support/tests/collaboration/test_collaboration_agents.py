"""Collaboration through the real services: the orchestrator process (API, engine, reactions), the
registry, code-review, feature-dev with a scripted model, and echo test agents.

- A review that requests changes opens a thread with one message per finding and hands the change to
  feature-dev, whose acceptance creates the follow-up task on the ticket.
- An agent SIGKILLed before acknowledging a message gets it again after its restart and acts on it once.
- A handoff the best agent declines goes to the next best, whose acceptance creates the follow-up task.
- The CLI lists threads and posts in one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from agent_orchestrator.demo.sample_repo import add_secret_branch, create_sample_repo
from support.tests.agents.processes import (
    AGENT_AUTH,
    REPO_ROOT,
    ServiceProcess,
    agent_request_body,
    free_port,
    registry_record,
    start_echo_agent,
    wait_until,
)
from support.tests.collaboration.polling import until
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration

REVIEW_PHASES = """\
description: Review the head branch.
from_any_open: [BLOCKED, CANCELLED]
phases:
  - name: REVIEW
    description: Review it.
    next: [DONE]
    tasks:
      - key: review
        title: "Review {repo.head_branch}"
        capability: code_review
        request_type: REVIEW_CODE
        payload: {repo: "{repo.path}", base: "{repo.base_branch}", head: "{repo.head_branch}"}
  - name: DONE
    status: done
  - name: BLOCKED
    status: blocked
    return_to_previous: true
  - name: CANCELLED
    status: cancelled
"""


@pytest.fixture(scope="module")
def platform(
    module_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    phases = tmp_path_factory.mktemp("phases")
    (phases / "review.yaml").write_text(REVIEW_PHASES)
    with running_platform(
        module_env,
        log_dir,
        ["code-review", "feature-dev"],
        modules={"feature-dev": "support.tests.workflows.scripted_feature_dev"},
        DEVTOOLS_PHASES_DIR=str(phases),
    ) as running:
        yield running


@pytest.fixture
def echoes(platform: Platform) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        service.terminate()


@pytest.fixture(scope="module")
def bus_redis(platform: Platform) -> Iterator[redis.Redis]:  # type: ignore[type-arg]
    client = redis.Redis.from_url(platform.env["DEVTOOLS_REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def test_a_review_requesting_changes_opens_a_thread_and_hands_the_change_to_feature_dev(
    platform: Platform, tmp_path: Path
) -> None:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    branch = add_secret_branch(repo)
    with platform.client() as client:
        ticket = client.create_ticket(
            "Configure the AWS key", str(repo.path), head=branch, phase_file="review"
        )

        def thread() -> dict[str, Any] | None:
            threads = client.list_threads(ticket=ticket["id"])
            if not threads:
                return None
            full = client.get_thread(threads[0]["id"])
            return full if full["handoffs"] and full["handoffs"][0]["status"] == "accepted" else None

        opened = until(thread, "the review's thread and its accepted handoff", seconds=60)
        review = client.list_tasks(ticket["id"])
        review_task = next(t for t in review if t["key"] == "review")
        findings = review_task["result"]["findings"]
        assert review_task["result"]["verdict"] == "request_changes" and findings
        messages = [m for m in opened["messages"] if m["kind"] == "finding"]
        assert len(messages) == len(findings)  # one message per finding
        assert {m["author"] for m in messages} == {"code-review"}
        assert {a["path"] for m in messages for a in m["attachments"]} == {f["file"] for f in findings}
        assert opened["task_id"] == review_task["id"] and opened["ticket_id"] == ticket["id"]

        (handoff,) = opened["handoffs"]
        assert (handoff["to_capability"], handoff["accepted_by"], handoff["accepted_kind"]) == (
            "feature_dev", "feature-dev", "agent",
        )  # fmt: skip
        follow_up = client.get_task(handoff["follow_up_task_id"])
        assert (follow_up["ticket_id"], follow_up["request_type"]) == (ticket["id"], "GENERATE_CODE")
        assert findings[0]["message"] in follow_up["payload"]["instruction"]
        assert follow_up["payload"]["_handoff"]["thread_id"] == opened["id"]
    kinds = [e.event_type.value for e in platform.bus_events(ticket["id"])]
    for kind in (
        "agent.collab.started",
        "agent.message.sent",
        "agent.handoff.requested",
        "agent.handoff.accepted",
    ):
        assert kind in kinds


def test_an_agent_killed_before_acknowledging_gets_the_message_again_and_acts_once(
    platform: Platform,
    echoes: list[ServiceProcess],
    bus_redis: redis.Redis,
    log_dir: Path,  # type: ignore[type-arg]
) -> None:
    prefix = platform.env["DEVTOOLS_REDIS_PREFIX"]
    echoes.append(start_echo_agent(platform.env, platform.registry, log_dir, replica="one"))
    with platform.client() as client:
        thread = client.create_thread("hold on", participants=[{"name": "echo", "kind": "agent"}])
        message = client.post_message(thread["id"], "hold gate-kill", "question")
        # The agent holds the message unacknowledged: it announces that, then waits for the gate.
        assert bus_redis.blpop([f"{prefix}:test:started:gate-kill"], timeout=60) is not None
        echoes[0].kill()
        echoes.append(start_echo_agent(platform.env, platform.registry, log_dir, replica="one"))
        assert bus_redis.blpop([f"{prefix}:test:started:gate-kill"], timeout=60) is not None  # redelivered
        bus_redis.rpush(f"{prefix}:test:release:gate-kill", "go")

        def replies() -> list[dict[str, Any]]:
            found = client.get_thread(thread["id"])["messages"]
            return [m for m in found if m["reply_to"] == message["id"]]

        (reply,) = until(replies, "the agent's reply", seconds=60)
        assert (reply["author"], reply["body"]) == ("echo", "echo: hold gate-kill")
        assert bus_redis.lrange(f"{prefix}:test:acted:{message['id']}", 0, -1) == ["echo.one"]  # acted once
        delivery = [m for m in client.get_thread(thread["id"])["messages"] if m["author"] == "echo"]
        assert len(delivery) == 1  # the reply and the acknowledgement are one statement: posted once


def test_a_declined_handoff_goes_to_the_next_best_agent(
    platform: Platform,
    echoes: list[ServiceProcess],
    bus_redis: redis.Redis,
    log_dir: Path,  # type: ignore[type-arg]
) -> None:
    prefix = platform.env["DEVTOOLS_REDIS_PREFIX"]
    echoes.append(
        start_echo_agent(
            platform.env, platform.registry, log_dir, ECHO_AGENT_ID="echo-a", ECHO_DECLINE_HANDOFFS="1"
        )
    )
    echoes.append(start_echo_agent(platform.env, platform.registry, log_dir, ECHO_AGENT_ID="echo-b"))
    wait_until(
        lambda: _record(platform, "echo-a") and _record(platform, "echo-b"),
        what="both echo agents registered",
    )
    repo = create_sample_repo(Path(platform.data_dir) / "decline-repo", free_port())
    with platform.client() as client:
        ticket = client.create_ticket("Say hello", str(repo.path), head=repo.feature, phase_file="review")
        # echo-b is made the worse fit (one of its two slots busy), so echo-a is offered it first.
        held = _hold(echoes[1], "echo-b", "busy-b")
        assert bus_redis.blpop([f"{prefix}:test:started:busy-b"], timeout=60) is not None
        wait_until(
            lambda: (_record(platform, "echo-b") or {}).get("active_requests") == 1, what="echo-b busier"
        )
        body = {
            "ticket_id": ticket["id"],
            "to_capability": "echo",
            "request_type": "ECHO",
            "reason": "say it back",
            "context": {"text": "hi"},
        }
        handoff = client.create_handoff(body)
        done = until(
            lambda: (h := client.get_handoff(handoff["id"]))["status"] == "accepted" and h,
            "the handoff accepted",
            seconds=60,
        )
        bus_redis.rpush(f"{prefix}:test:release:busy-b", "go")
        held.join(timeout=60)
        assert [d["agent"] for d in done["declined_by"]] == ["echo-a"]
        assert "declines every handoff" in done["declined_by"][0]["reason"]
        assert (done["accepted_by"], done["offers"]) == ("echo-b", 2)
        task = until(
            lambda: (t := client.get_task(done["follow_up_task_id"]))["status"] == "succeeded" and t,
            "the follow-up task done",
            seconds=60,
        )
        assert task["result"]["text"] == "hi"  # the follow-up ran with the handoff's context


def _record(platform: Platform, agent_id: str) -> dict[str, Any] | None:
    return registry_record(platform.registry, agent_id)


def _hold(service: ServiceProcess, agent_id: str, gate: str) -> threading.Thread:
    """A WAIT request held open on `service` (over HTTP, in the background) until the gate opens."""
    body = agent_request_body(agent_id, "WAIT", {"gate": gate})
    worker = threading.Thread(
        target=lambda: httpx.post(f"{service.url}/agent-request", headers=AGENT_AUTH, json=body, timeout=90)
    )
    worker.start()
    return worker


def test_the_cli_lists_threads_and_posts(platform: Platform) -> None:
    with platform.client() as client:
        thread = client.create_thread("release notes")
    env = {**platform.env, "DEVTOOLS_ORCHESTRATOR_URL": platform.orchestrator.url, "COLUMNS": "200"}

    def devtools(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent_orchestrator", *args],
            cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    posted = devtools("threads", "post", thread["id"], "ship it on Friday", "--kind", "decision")
    assert posted.returncode == 0, posted.stderr
    shown = devtools("threads", "show", thread["id"])
    assert shown.returncode == 0 and "decision: ship it on Friday" in shown.stdout
    listed = devtools("threads", "list")
    assert thread["id"] in listed.stdout
    refused = devtools("handoffs", "accept", "00000000-0000-0000-0000-000000000000")
    assert refused.returncode != 0 and "no handoff" in refused.stderr
