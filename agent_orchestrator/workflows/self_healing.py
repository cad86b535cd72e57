"""self_healing: detect -> diagnose -> apply_fix -> verify, looping until healthy or max_attempts.

detect --healthy--> report                      (nothing to do)
   └--unhealthy--> diagnose -> apply_fix -> verify --healthy--> report
                      ^                         |
                      └---- attempts left ------┤
                                                └-- exhausted --> escalate (interrupt)
                                                                -> final_check -> report

Diagnosis is rule-based on the infrastructure agent's health report (see `choose_fix`);
with an LLM configured the agent's `diagnosis` prose is added to each attempt. Fixes run
under the `env:<env>` lock with its fencing token, each recorded with `run_once` so a
resumed run does not repeat an attempt that already happened.
"""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel, Field

from agent_orchestrator.runs.context import current_run
from agent_orchestrator.runs.effects import run_once
from agent_orchestrator.workflows.agent_calls import (
    AGENT_RETRY,
    AgentCallFailed,
    call_agent,
    emit_event,
    workflow_resources,
)
from agent_orchestrator.workflows.outcome import concluder, step_record
from agent_orchestrator.workflows.report import self_healing_report
from agent_orchestrator.workflows.run_locks import run_lock
from agent_orchestrator.workflows.state import MultiAgentState, utc_now_iso
from shared.bus import InterAgentEventType

RECENT_DEPLOY_SECONDS = 3600.0
LOCK_TTL_SECONDS = 120
FIXES = {  # fix -> (request type, payload extras)
    "restart": ("RESTART", {}),
    "rollback": ("ROLLBACK", {}),
    "config_revert": ("UPDATE_CONFIG", {"revert": True}),
}


class SelfHealingInput(BaseModel):
    environment: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    max_attempts: int = Field(3, ge=1, le=10)
    check_timeout_seconds: float = Field(30, gt=0, le=600)
    fix_timeout_seconds: float = Field(120, gt=0, le=3600)


class SelfHealingState(MultiAgentState, total=False):
    environment: str
    max_attempts: int
    check_timeout_seconds: float
    fix_timeout_seconds: float
    detected: dict[str, Any]
    health: dict[str, Any]
    diagnosis: dict[str, Any]
    fix: dict[str, Any]
    attempts: Annotated[list[dict[str, Any]], operator.add]
    escalation: dict[str, Any]


def release_age_seconds(release_id: str | None, now: datetime | None = None) -> float | None:
    """Release ids start with their UTC creation time (`20260105T100000-...`)."""
    if not release_id:
        return None
    try:
        created = datetime.strptime(release_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return ((now or datetime.now(UTC)) - created).total_seconds()


def config_changed_since_release(data_dir: Path, environment: str, release_id: str | None) -> bool:
    """The local target keeps config.env (+ .previous) beside its releases on this host: was it
    changed after the current release went live?"""
    root = data_dir / "environments" / environment
    current, previous = root / "config.env", root / "config.env.previous"
    age = release_age_seconds(release_id)
    if not previous.exists() or not current.exists() or age is None:
        return False
    changed_age = datetime.now(UTC).timestamp() - current.stat().st_mtime
    return changed_age < age


def choose_fix(health: dict[str, Any], tried: list[str], config_changed: bool) -> tuple[str, str]:
    """(fix, why): the first fitting fix not tried yet (the first fitting one again when all were)."""
    age = release_age_seconds(health.get("release_id"))
    recent = age is not None and age < RECENT_DEPLOY_SECONDS
    candidates: list[tuple[str, str]] = []
    if health.get("status") == "down":
        candidates.append(("restart", "the process is gone: start the current release again"))
    if config_changed:
        candidates.append(("config_revert", "the config changed after this release went live: revert it"))
    if recent:
        candidates.append(("rollback", "the release is recent and unhealthy: go back to the previous one"))
    candidates += [("restart", "alive but not answering: restart it"), ("rollback", "last resort: roll back")]
    ordered: list[tuple[str, str]] = []
    for fix, why in candidates:  # each fix once, with the first (most specific) reason
        if all(fix != known for known, _ in ordered):
            ordered.append((fix, why))
    for fix, why in ordered:
        if fix not in tried:
            return fix, why
    return ordered[0]


async def _health(state: SelfHealingState) -> dict[str, Any]:
    """The infrastructure agent's health report; its error answer becomes a report with `error` set, so
    every check (detect, verify, final_check) ends in a report instead of a failed run without one.
    Timeouts still raise: the step's retry policy tries them again."""
    try:
        return await call_agent(
            "infrastructure",
            "HEALTH_CHECK",
            {"environment": state["environment"]},
            timeout=state["check_timeout_seconds"],
            correlation_id=state["task_id"],
        )
    except AgentCallFailed as exc:
        return {"status": "unknown", "healthy": False, "reason": exc.message, "error": exc.message}


async def detect(state: SelfHealingState) -> dict[str, Any]:
    health = await _health(state)
    return {
        "detected": health,
        "health": health,
        **step_record("infrastructure", "detect", health.get("status", "?")),
    }


def after_detect(state: SelfHealingState) -> str:
    health = state["detected"]
    if health.get("healthy") or health.get("error") or health.get("status") == "not_deployed":
        return "report"
    return "diagnose"


async def diagnose(state: SelfHealingState) -> dict[str, Any]:
    health = state["health"]
    tried = [a["fix"] for a in state.get("attempts", [])]
    data_dir = workflow_resources().settings.data_dir
    changed = config_changed_since_release(data_dir, state["environment"], health.get("release_id"))
    fix, why = choose_fix(health, tried, changed)
    diagnosis = {
        "fix": fix,
        "why": why,
        "symptom": health.get("status"),
        "reason": health.get("reason"),
        "llm": health.get("diagnosis"),
    }
    return {"diagnosis": diagnosis, **step_record("orchestrator", "diagnose", fix)}


async def apply_fix(state: SelfHealingState) -> dict[str, Any]:
    env, run_id = state["environment"], state["task_id"]
    fix = state["diagnosis"]["fix"]
    request_type, extras = FIXES[fix]
    number = len(state.get("attempts", [])) + 1
    locks = await workflow_resources().lock_manager(current_run().pool.conninfo)
    async with run_lock(
        locks, f"env:{env}", ttl=LOCK_TTL_SECONDS, wait_timeout=300, reason=f"self_healing {fix}"
    ) as lease:
        payload = {"environment": env, "fencing_token": lease.fencing_token, **extras}
        try:
            result = await run_once(
                f"fix:{env}:{number}",
                lambda: call_agent(
                    "infrastructure",
                    request_type,
                    payload,
                    timeout=state["fix_timeout_seconds"],
                    correlation_id=run_id,
                ),
            )
        except AgentCallFailed as exc:
            result = {"status": "error", "message": exc.message}
    summary = result.get("message") or result.get("status") or ("up" if result.get("healthy") else "done")
    return {
        "fix": {"fix": fix, "request_type": request_type, "result": result, "summary": str(summary)},
        **step_record("infrastructure", "apply_fix", str(result.get("status", "done"))),
    }


async def verify(state: SelfHealingState) -> dict[str, Any]:
    health = await _health(state)
    attempt = {
        "diagnosis": state["diagnosis"]["why"],
        "fix": state["fix"]["fix"],
        "fix_result": state["fix"]["summary"],
        "health_after": health.get("status"),
        "llm_diagnosis": state["diagnosis"].get("llm"),
        "at": utc_now_iso(),
    }
    status = "healthy" if health.get("healthy") else "unhealthy"
    return {"health": health, "attempts": [attempt], **step_record("infrastructure", "verify", status)}


def after_verify(state: SelfHealingState) -> str:
    if state["health"].get("healthy") or state["health"].get("error"):
        return "report"  # healed, or the check itself failed: another fix chosen blind would not help
    return "diagnose" if len(state.get("attempts", [])) < state["max_attempts"] else "escalate"


async def escalate(state: SelfHealingState) -> dict[str, Any]:
    request = {
        "kind": "self_healing_exhausted",
        "run_id": state["task_id"],
        "environment": state["environment"],
        "attempts": [
            {k: a[k] for k in ("fix", "fix_result", "health_after")} for a in state.get("attempts", [])
        ],
        "health": {k: state["health"].get(k) for k in ("status", "reason", "release_id")},
        "question": "automatic fixes are exhausted: approve once the environment is fixed, or reject",
    }

    async def announce() -> dict[str, str]:
        await emit_event(InterAgentEventType.APPROVAL_REQUIRED, request, state["task_id"])
        return {"emitted": "approval_required"}

    await run_once("event:approval_required", announce)
    answer = interrupt(request)
    answer = answer if isinstance(answer, dict) else {}
    record = {
        "approved": bool(answer.get("approved")),
        "approver": answer.get("approver"),
        "comment": answer.get("comment"),
        "decided_at": utc_now_iso(),
    }
    return {
        "escalation": record,
        **step_record("person", "escalate", "approved" if record["approved"] else "rejected"),
    }


async def final_check(state: SelfHealingState) -> dict[str, Any]:
    health = await _health(state)
    return {"health": health, **step_record("infrastructure", "final_check", health.get("status", "?"))}


def outcome(state: SelfHealingState) -> tuple[str, bool, str]:
    detected, health = state.get("detected", {}), state.get("health", {})
    env, attempts = state["environment"], len(state.get("attempts", []))
    if detected.get("error"):
        return "check_failed", False, f"health check of {env} failed: {detected['error']}"
    if detected.get("status") == "not_deployed":
        return "not_deployed", False, f"nothing is deployed to {env}"
    if detected.get("healthy"):
        return "healthy", True, f"{env} is healthy; nothing to do"
    escalation = state.get("escalation")
    if escalation and not escalation.get("approved"):
        return (
            "escalation_rejected",
            False,
            f"{env} still unhealthy after {attempts} attempt(s); rejected by {escalation.get('approver')}",
        )
    if health.get("error"):
        step = "final check" if state.get("escalation") else f"check after attempt {attempts}"
        return "check_failed", False, f"the {step} of {env} failed: {health['error']}"
    if health.get("healthy"):
        by = f" after escalation to {escalation.get('approver')}" if escalation else ""
        return "healed", True, f"{env} healthy again after {attempts} attempt(s){by}"
    return (
        "unhealthy",
        False,
        f"{env} still {health.get('status')} after {attempts} attempt(s): {health.get('reason')}",
    )


def report(state: SelfHealingState) -> dict[str, Any]:
    kind, ok, reason = outcome(state)
    final = {
        "outcome": kind,
        "ok": ok,
        "reason": reason,
        "environment": state["environment"],
        "attempts": len(state.get("attempts", [])),
        "health": state.get("health", {}).get("status"),
        "report": self_healing_report(state, kind, reason),
    }
    return {"final_result": final, "updated_at": utc_now_iso()}


conclude = concluder("the environment is not healthy")


def build_self_healing_graph() -> StateGraph:
    graph = StateGraph(SelfHealingState)
    graph.add_node("detect", detect, retry_policy=AGENT_RETRY)
    graph.add_node("diagnose", diagnose)
    graph.add_node("apply_fix", apply_fix)  # recorded per attempt; no in-step retry of a fix
    graph.add_node("verify", verify, retry_policy=AGENT_RETRY)
    graph.add_node("escalate", escalate)
    graph.add_node("final_check", final_check, retry_policy=AGENT_RETRY)
    graph.add_node("report", report)
    graph.add_node("conclude", conclude)
    graph.add_edge(START, "detect")
    graph.add_conditional_edges("detect", after_detect, ["diagnose", "report"])
    graph.add_edge("diagnose", "apply_fix")
    graph.add_edge("apply_fix", "verify")
    graph.add_conditional_edges("verify", after_verify, ["report", "diagnose", "escalate"])
    graph.add_edge("escalate", "final_check")
    graph.add_edge("final_check", "report")
    graph.add_edge("report", "conclude")
    graph.add_edge("conclude", END)
    return graph
