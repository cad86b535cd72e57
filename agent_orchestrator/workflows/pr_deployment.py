"""pr_deployment: code_review -> test -> approval -> deploy -> verify -> report -> conclude.

- `request_changes` (or a review that could not run) and failing tests skip straight to the
  report: nothing is deployed.
- approval follows `approval_policy`: a person is asked through LangGraph `interrupt()`
  (the run waits as `interrupted` until `POST /runs/{id}/approve|reject`); a rejection
  ends the run.
- deploy holds `repo:<name>` then `env:<env>` (always in that order, so two runs never
  deadlock) and hands the env lock's fencing token to the infrastructure agent; the
  DEPLOY_SERVICE call is recorded with `run_once`, so a resumed or replayed run never
  deploys twice (and the infrastructure agent answers a deploy of the commit already live
  and healthy without touching it). Still holding the env lock, deploy checks the new
  release's health and rolls an unhealthy one back, so no other deploy lands in between.
- verify reports what that check found.
- conclude fails the run with the reason unless the release is live and healthy; the
  Markdown report is in the state either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from agent_orchestrator.runs.context import current_run
from agent_orchestrator.runs.effects import run_once
from agent_orchestrator.workflows.agent_calls import (
    AGENT_RETRY,
    AgentCallFailed,
    call_agent,
    emit_event,
    workflow_resources,
)
from agent_orchestrator.workflows.approval_policy import DEFAULT_MAX_AUTO_APPROVE_LINES, decide_approval
from agent_orchestrator.workflows.deploy_thread import post_failed_verification
from agent_orchestrator.workflows.inputs import git_ref, git_repository
from agent_orchestrator.workflows.outcome import concluder, step_record
from agent_orchestrator.workflows.report import pr_deployment_report
from agent_orchestrator.workflows.run_locks import run_lock
from agent_orchestrator.workflows.state import MultiAgentState, utc_now_iso
from shared.bus import InterAgentEventType

log = logging.getLogger(__name__)

MAX_FINDINGS_KEPT = 50
LOCK_TTL_SECONDS = 120


class PRDeploymentInput(BaseModel):
    repo: str = Field(min_length=1, description="path of the local git repository")
    head: str = Field(min_length=1, description="branch or commit holding the change")
    base: str = Field("main", min_length=1)
    environment: str = Field("staging", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    max_auto_approve_lines: int = Field(DEFAULT_MAX_AUTO_APPROVE_LINES, ge=0)
    review_timeout_seconds: float = Field(120, gt=0, le=3600)
    test_timeout_seconds: float = Field(600, gt=0, le=7200)
    deploy_timeout_seconds: float = Field(300, gt=0, le=3600)
    lock_wait_seconds: float = Field(300, ge=0, le=3600)

    @field_validator("repo")
    @classmethod
    def _repository(cls, value: str) -> str:
        return git_repository(value)

    @field_validator("head", "base")
    @classmethod
    def _ref(cls, value: str, info: ValidationInfo) -> str:
        return git_ref(info.data.get("repo"), value)


class PRDeploymentState(MultiAgentState, total=False):
    repo: str
    head: str
    base: str
    environment: str
    max_auto_approve_lines: int
    review_timeout_seconds: float
    test_timeout_seconds: float
    deploy_timeout_seconds: float
    lock_wait_seconds: float
    review: dict[str, Any]
    tests: dict[str, Any]
    approval: dict[str, Any]
    deploy: dict[str, Any]
    verify: dict[str, Any]


def repo_name(repo: str) -> str:
    return Path(repo).resolve().name or "repo"


async def code_review(state: PRDeploymentState) -> dict[str, Any]:
    payload = {"repo": state["repo"], "base": state["base"], "head": state["head"]}
    try:
        result = await call_agent(
            "code-review",
            "REVIEW_CODE",
            payload,
            timeout=state["review_timeout_seconds"],
            correlation_id=state["task_id"],
        )
    except AgentCallFailed as exc:
        review = {"error": exc.message}
        return {"review": review, **step_record("code-review", "code_review", "error", exc.message)}
    review = {**result, "findings": result.get("findings", [])[:MAX_FINDINGS_KEPT]}
    return {"review": review, **step_record("code-review", "code_review", result.get("verdict", "?"))}


def after_review(state: PRDeploymentState) -> str:
    review = state.get("review", {})
    return "report" if review.get("error") or review.get("verdict") == "request_changes" else "test"


async def test(state: PRDeploymentState) -> dict[str, Any]:
    ref = state["review"].get("head_commit") or state["head"]  # test exactly what was reviewed
    payload = {"repo": state["repo"], "ref": ref}
    try:
        result = await call_agent(
            "cicd",
            "RUN_PIPELINE",
            payload,
            timeout=state["test_timeout_seconds"],
            correlation_id=state["task_id"],
        )
    except AgentCallFailed as exc:
        return {"tests": {"error": exc.message}, **step_record("cicd", "test", "error", exc.message)}
    tests = {k: v for k, v in result.items() if k != "log_tail"}
    tests["log_tail"] = "\n".join(str(result.get("log_tail", "")).splitlines()[-15:])
    return {"tests": tests, **step_record("cicd", "test", result.get("status", "?"))}


def after_test(state: PRDeploymentState) -> str:
    return "approval" if state.get("tests", {}).get("status") == "passed" else "report"


async def approval(state: PRDeploymentState) -> dict[str, Any]:
    decision = decide_approval(
        state["environment"], state["review"], max_auto_approve_lines=state["max_auto_approve_lines"]
    )
    if not decision.needs_person:
        record = {
            "approved": True,
            "approver": "policy",
            "automatic": True,
            "comment": None,
            "policy": decision.as_dict(),
            "decided_at": utc_now_iso(),
        }
        return {"approval": record, **step_record("policy", "approval", "auto-approved")}
    request = {
        "kind": "deploy_approval",
        "run_id": state["task_id"],
        "repo": state["repo"],
        "head": state["head"],
        "environment": state["environment"],
        "reasons": decision.reasons,
        "review_verdict": state["review"].get("verdict"),
        "tests": {k: state["tests"].get(k) for k in ("passed", "failed", "skipped")},
    }
    # The node runs again when the run resumes: the broadcast is recorded once per run.
    await run_once(
        "event:approval_required",
        lambda: _emit(InterAgentEventType.APPROVAL_REQUIRED, request, state["task_id"]),
    )
    answer = interrupt(request)
    approved = bool(isinstance(answer, dict) and answer.get("approved"))
    answer = (
        answer
        if isinstance(answer, dict)
        else {"approved": False, "comment": f"unreadable answer {answer!r}"}
    )
    record = {
        "approved": approved,
        "approver": answer.get("approver"),
        "automatic": False,
        "comment": answer.get("comment"),
        "policy": decision.as_dict(),
        "decided_at": utc_now_iso(),
    }
    kind = InterAgentEventType.APPROVED if approved else InterAgentEventType.REJECTED
    await run_once("event:approval_decision", lambda: _emit(kind, {**request, **record}, state["task_id"]))
    status = f"{'approved' if approved else 'rejected'} by {record['approver']}"
    return {"approval": record, **step_record("person", "approval", status)}


async def _emit(kind: InterAgentEventType, payload: dict[str, Any], run_id: str) -> dict[str, str]:
    await emit_event(kind, payload, run_id)
    return {"emitted": kind.value}


def after_approval(state: PRDeploymentState) -> str:
    return "deploy" if state.get("approval", {}).get("approved") else "report"


async def deploy(state: PRDeploymentState) -> dict[str, Any]:
    env, run_id = state["environment"], state["task_id"]
    ref = state["review"].get("head_commit") or state["head"]
    locks = await workflow_resources().lock_manager(current_run().pool.conninfo)
    held: dict[str, Any] = {}
    lock_args = {
        "ttl": LOCK_TTL_SECONDS,
        "wait_timeout": state["lock_wait_seconds"],
        "reason": "pr_deployment",
    }
    async with (
        run_lock(locks, f"repo:{repo_name(state['repo'])}", **lock_args) as repo_lease,
        run_lock(locks, f"env:{env}", **lock_args) as env_lease,
    ):
        for lease in (repo_lease, env_lease):
            held[lease.resource_id] = {"fencing_token": lease.fencing_token, "owner": lease.owner}
            await emit_event(
                InterAgentEventType.RESOURCE_LOCKED,
                {"resource": lease.resource_id, "fencing_token": lease.fencing_token, "owner": lease.owner},
                run_id,
            )
        payload = {
            "environment": env,
            "repo": state["repo"],
            "ref": ref,
            "fencing_token": env_lease.fencing_token,
            # A later attempt of this run (the orchestrator died before recording the answer) is
            # answered with this deploy's result instead of deploying again.
            "idempotency_key": f"{run_id}:deploy:{env}",
        }
        try:
            result = await run_once(
                f"deploy:{env}",
                lambda: call_agent(
                    "infrastructure",
                    "DEPLOY_SERVICE",
                    payload,
                    timeout=state["deploy_timeout_seconds"],
                    correlation_id=run_id,
                ),
            )
        except AgentCallFailed as exc:
            result = {"status": "error", "message": exc.message, "failure_reason": exc.message}
        if result.get("status") == "deployed":
            # Verified (and rolled back if need be) before the environment's lock is let go: no other
            # deploy can land between this release and its verification.
            result = {**result, "verification": await _verify_release(state, result, env_lease.fencing_token)}
    for resource, lock in held.items():
        await emit_event(
            InterAgentEventType.RESOURCE_UNLOCKED, {"resource": resource, "owner": lock["owner"]}, run_id
        )
    result = {**result, "fencing_token": env_lease.fencing_token, "ref": ref}
    return {
        "deploy": result,
        "locks": {name: {**info, "released": True} for name, info in held.items()},
        **step_record("infrastructure", "deploy", result.get("status", "?"), result.get("failure_reason")),
    }


def after_deploy(state: PRDeploymentState) -> str:
    return "verify" if state.get("deploy", {}).get("status") == "deployed" else "report"


async def _verify_release(
    state: PRDeploymentState, deployed: dict[str, Any], fencing_token: int
) -> dict[str, Any]:
    """Is the new release what serves healthily now? If not, put the previous one back (with the
    environment's lock the deploy holds). The `verify` node reports what this found."""
    env, run_id = state["environment"], state["task_id"]
    try:
        health = await call_agent(
            "infrastructure", "HEALTH_CHECK", {"environment": env}, timeout=30, correlation_id=run_id
        )
    except AgentCallFailed as exc:
        # No healthy answer is no proof the release works: treat it as unhealthy and roll back.
        health = {"healthy": False, "status": "unknown", "reason": f"health check failed: {exc.message}"}
    if health.get("healthy") and health.get("release_id") == deployed.get("release_id"):
        return {"healthy": True, "health": health}
    try:
        rollback = await run_once(
            f"rollback:{env}",
            lambda: call_agent(
                "infrastructure",
                "ROLLBACK",
                {"environment": env, "fencing_token": fencing_token},
                timeout=state["deploy_timeout_seconds"],
                correlation_id=run_id,
            ),
        )
    except AgentCallFailed as exc:
        rollback = {"status": "failed", "message": exc.message}
    reason = health.get("reason") or f"release {health.get('release_id')} is {health.get('status')}"
    return {"healthy": False, "health": health, "reason": reason, "rollback": rollback}


async def verify(state: PRDeploymentState) -> dict[str, Any]:
    """Report the verification the deploy step made under the environment's lock."""
    result = state["deploy"].get("verification") or {"healthy": False, "reason": "not verified"}
    if result.get("healthy"):
        return {"verify": result, **step_record("infrastructure", "verify", "healthy")}
    result = {**result, "thread_id": await post_failed_verification(state["environment"], result)}
    return {"verify": result, **step_record("infrastructure", "verify", "unhealthy", result.get("reason"))}


def outcome(state: PRDeploymentState) -> tuple[str, bool, str]:
    """(outcome, ok, reason) from what the steps recorded."""
    review, tests = state.get("review", {}), state.get("tests", {})
    if review.get("error"):
        return "review_failed", False, f"code review could not run: {review['error']}"
    if review.get("verdict") == "request_changes":
        reason = (review.get("decided_by") or {}).get("reason", "")
        return "changes_requested", False, f"code review requested changes: {reason}"
    if tests.get("error"):
        return "tests_failed", False, f"tests could not run: {tests['error']}"
    if tests.get("status") != "passed":
        return (
            "tests_failed",
            False,
            f"tests {tests.get('status')}: {tests.get('failed', 0)} failed, {tests.get('errors', 0)} errors",
        )
    approval_record = state.get("approval", {})
    if not approval_record.get("approved"):
        comment = f" ({approval_record['comment']})" if approval_record.get("comment") else ""
        return "rejected", False, f"deploy rejected by {approval_record.get('approver')}{comment}"
    deployed = state.get("deploy", {})
    if deployed.get("status") != "deployed":
        why = deployed.get("failure_reason") or deployed.get("message")
        return "deploy_failed", False, f"deploy {deployed.get('status')}: {why}"
    verified = state.get("verify", {})
    if not verified.get("healthy"):
        rolled = (verified.get("rollback") or {}).get("status")
        return "verify_failed", False, f"verification failed ({verified.get('reason')}); rollback {rolled}"
    return "deployed", True, f"release {deployed.get('release_id')} is live on {state['environment']}"


def report(state: PRDeploymentState) -> dict[str, Any]:
    kind, ok, reason = outcome(state)
    health = state.get("verify", {}).get("health") or {}
    final = {
        "outcome": kind,
        "ok": ok,
        "reason": reason,
        "environment": state["environment"],
        "release_id": state.get("deploy", {}).get("release_id"),
        "url": health.get("url"),
        "report": pr_deployment_report(state, kind, reason),
    }
    return {"final_result": final, "updated_at": utc_now_iso()}


conclude = concluder("pr_deployment did not deploy")


def build_pr_deployment_graph() -> StateGraph:
    graph = StateGraph(PRDeploymentState)
    graph.add_node("code_review", code_review, retry_policy=AGENT_RETRY)
    graph.add_node("test", test, retry_policy=AGENT_RETRY)
    graph.add_node("approval", approval)
    graph.add_node("deploy", deploy)  # no in-step retry: a timed-out deploy may still be running
    graph.add_node("verify", verify)  # reads what deploy checked: no agent call of its own
    graph.add_node("report", report)
    graph.add_node("conclude", conclude)
    graph.add_edge(START, "code_review")
    graph.add_conditional_edges("code_review", after_review, ["test", "report"])
    graph.add_conditional_edges("test", after_test, ["approval", "report"])
    graph.add_conditional_edges("approval", after_approval, ["deploy", "report"])
    graph.add_conditional_edges("deploy", after_deploy, ["verify", "report"])
    graph.add_edge("verify", "report")
    graph.add_edge("report", "conclude")
    graph.add_edge("conclude", END)
    return graph
