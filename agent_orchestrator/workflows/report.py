"""The Markdown report of a flagship run: what each agent found and did, step by step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_FINDINGS_SHOWN = 15


def _cell(value: Any) -> str:
    return str(value if value is not None else "-").replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _header(title: str, state: Mapping[str, Any], outcome: str, reason: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"- run: `{state.get('task_id')}`",
        f"- outcome: **{outcome}**",
        f"- reason: {reason}",
        "",
    ]


def _review_section(review: Mapping[str, Any]) -> list[str]:
    lines = ["## Code review (code-review agent)", ""]
    if not review:
        return [*lines, "Not run.", ""]
    if review.get("error"):
        return [*lines, f"Could not review: {review['error']}", ""]
    decided = review.get("decided_by") or {}
    stats = review.get("stats") or {}
    lines += [
        f"- verdict: **{review.get('verdict')}** (rule `{decided.get('rule')}`: {decided.get('reason')})",
        f"- commits: base `{str(review.get('base_commit', ''))[:10]}`, "
        f"head `{str(review.get('head_commit', ''))[:10]}`",
        f"- change: {stats.get('files_changed', 0)} file(s), +{stats.get('lines_added', 0)} "
        f"-{stats.get('lines_deleted', 0)}",
        f"- summary: {review.get('summary')}",
    ]
    findings = review.get("findings") or []
    if findings:
        lines += [
            "",
            *_table(
                ["severity", "category", "rule", "where", "message"],
                [
                    [
                        f.get("severity"),
                        f.get("category"),
                        f.get("rule"),
                        f"{f.get('file')}:{f.get('line') or ''}",
                        f.get("message"),
                    ]
                    for f in findings[:MAX_FINDINGS_SHOWN]
                ],
            ),
        ]
        if len(findings) > MAX_FINDINGS_SHOWN:
            lines.append(f"\n…and {len(findings) - MAX_FINDINGS_SHOWN} more.")
    if review.get("llm_summary"):
        lines += ["", review["llm_summary"]]
    return [*lines, ""]


def _tests_section(tests: Mapping[str, Any]) -> list[str]:
    lines = ["## Tests (cicd agent)", ""]
    if not tests:
        return [*lines, "Not run.", ""]
    if tests.get("error"):
        return [*lines, f"Could not run: {tests['error']}", ""]
    lines += [
        f"- status: **{tests.get('status')}** ({tests.get('passed', 0)} passed, "
        f"{tests.get('failed', 0)} failed, {tests.get('skipped', 0)} skipped, "
        f"{tests.get('errors', 0)} errors) in {tests.get('duration_seconds')} s",
        f"- command: `{tests.get('command')}` ({tests.get('command_source')}) "
        f"at `{str(tests.get('commit', ''))[:10]}`",
        f"- log: `{tests.get('log_path')}`",
    ]
    if tests.get("status") != "passed" and tests.get("log_tail"):
        lines += ["", "```", str(tests["log_tail"]), "```"]
    return [*lines, ""]


def _approval_section(approval: Mapping[str, Any]) -> list[str]:
    lines = ["## Approval", ""]
    if not approval:
        return [*lines, "Not reached.", ""]
    policy = approval.get("policy") or {}
    if approval.get("automatic"):
        lines.append("- approved automatically by policy (no rule asked for a person)")
    else:
        verb = "approved" if approval.get("approved") else "rejected"
        lines.append(f"- **{verb}** by `{approval.get('approver')}` at {approval.get('decided_at')}")
        lines += [f"- a person was needed: {r}" for r in policy.get("reasons", [])]
        if approval.get("comment"):
            lines.append(f"- comment: {approval['comment']}")
    return [*lines, ""]


def _deploy_section(
    deploy: Mapping[str, Any], verify: Mapping[str, Any], locks: Mapping[str, Any]
) -> list[str]:
    lines = ["## Deploy (infrastructure agent)", ""]
    if not deploy:
        return [*lines, "Nothing was deployed.", ""]
    lines += [
        f"- status: **{deploy.get('status')}**: {deploy.get('message')}",
        f"- release: `{deploy.get('release_id')}` from `{str(deploy.get('ref', ''))[:10]}`; "
        f"active now: `{deploy.get('active_release')}`; previous: `{deploy.get('previous_release')}`",
        f"- fencing token: {deploy.get('fencing_token')}; locks held: "
        + (", ".join(f"`{name}` (token {info.get('fencing_token')})" for name, info in locks.items()) or "-"),
    ]
    if deploy.get("failure_reason"):
        lines.append(f"- failure: {deploy['failure_reason']}")
    if verify:
        health = verify.get("health") or {}
        state = "healthy" if verify.get("healthy") else f"unhealthy ({verify.get('reason')})"
        lines.append(f"- verification: {state}; {health.get('url')} answered {health.get('http_status')}")
        rollback = verify.get("rollback")
        if rollback:
            lines.append(f"- rollback: {rollback.get('status')}: {rollback.get('message')}")
    return [*lines, ""]


def pr_deployment_report(state: Mapping[str, Any], outcome: str, reason: str) -> str:
    title = f"PR deployment: {state.get('head')} → {state.get('environment')}"
    lines = _header(title, state, outcome, reason)
    lines.append(f"Repository `{state.get('repo')}`, `{state.get('base')}`...`{state.get('head')}`.\n")
    lines += _review_section(state.get("review") or {})
    lines += _tests_section(state.get("tests") or {})
    lines += _approval_section(state.get("approval") or {})
    lines += _deploy_section(state.get("deploy") or {}, state.get("verify") or {}, state.get("locks") or {})
    return "\n".join(lines).rstrip() + "\n"


def docs_report(state: Mapping[str, Any], outcome: str, reason: str, written: Mapping[str, str]) -> str:
    lines = _header("Documentation", state, outcome, reason)
    lines.append(f"Repository `{state.get('repo')}`, written to `{state.get('output_dir')}`.\n")
    rows = []
    for doc_type in state.get("doc_types", []):
        result = (state.get("partial_results") or {}).get(doc_type) or {}
        if result.get("error"):
            rows.append([doc_type, "**failed**", "-", "-", result["error"]])
        else:
            rows.append(
                [
                    doc_type,
                    "written",
                    f"`{written.get(doc_type, '-')}`",
                    result.get("chars"),
                    f"{len(result.get('sources', []))} source file(s)",
                ]
            )
    lines += [
        "## Documents (documentation agent)",
        "",
        *_table(["type", "status", "file", "chars", "notes"], rows),
    ]
    return "\n".join(lines).rstrip() + "\n"


def self_healing_report(state: Mapping[str, Any], outcome: str, reason: str) -> str:
    lines = _header(f"Self-healing: {state.get('environment')}", state, outcome, reason)
    first = state.get("detected") or {}
    lines += [
        "## Detection (infrastructure agent)",
        "",
        f"- status: **{first.get('status')}** (release `{first.get('release_id')}`): "
        f"{first.get('reason') or 'ok'}",
    ]
    if first.get("error_lines"):
        lines += ["- recent errors:", "", "```", *first["error_lines"][-5:], "```"]
    attempts = state.get("attempts") or []
    lines += ["", f"## Attempts ({len(attempts)} of at most {state.get('max_attempts')})", ""]
    if attempts:
        lines += _table(
            ["#", "diagnosis", "fix", "fix result", "health after"],
            [
                [i + 1, a.get("diagnosis"), a.get("fix"), a.get("fix_result"), a.get("health_after")]
                for i, a in enumerate(attempts)
            ],
        )
    else:
        lines.append("None needed.")
    escalation = state.get("escalation") or {}
    if escalation:
        verb = "approved" if escalation.get("approved") else "rejected"
        lines += [
            "",
            "## Escalation",
            "",
            f"- a person was asked after {len(attempts)} attempt(s)",
            f"- {verb} by `{escalation.get('approver')}`: {escalation.get('comment') or '-'}",
        ]
    return "\n".join(lines).rstrip() + "\n"
