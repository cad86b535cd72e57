"""parallel_docs: one `Send` branch per document type to the documentation agent, then merge.

START --Send per doc type--> generate (xN, one superstep) --> write --> conclude
(the map-reduce graph template, agent_orchestrator/workflows/templates.py)

Each branch puts its document (or its error) under `partial_results[doc_type]`; the
reducer merges the branches. `write` writes every document that was generated to the
output folder (`<doc_type>.md` plus an `index.md`), whatever happened to the others;
`conclude` fails the run, naming the failed types, if any branch failed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from langgraph.graph import StateGraph
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from agent_orchestrator.workflows.agent_calls import AGENT_RETRY, AgentCallFailed, call_agent
from agent_orchestrator.workflows.inputs import git_ref, git_repository, output_folder
from agent_orchestrator.workflows.outcome import concluder, step_record
from agent_orchestrator.workflows.report import docs_report
from agent_orchestrator.workflows.state import MultiAgentState, utc_now_iso
from agent_orchestrator.workflows.templates import Step, map_reduce
from shared.config import get_settings

DocType = Literal["api", "user_guide", "deployment_guide"]
DEFAULT_DOC_TYPES: list[DocType] = ["api", "user_guide", "deployment_guide"]


class ParallelDocsInput(BaseModel):
    repo: str = Field(min_length=1, description="path of the local git repository")
    output_dir: str = Field(min_length=1, description="folder to write into (relative: inside the repo)")
    doc_types: list[DocType] = Field(default_factory=lambda: list(DEFAULT_DOC_TYPES), min_length=1)
    ref: str | None = Field(None, min_length=1, description="document this ref (default: the working tree)")
    packages: list[str] | None = Field(None, description="api: only these top-level packages")
    timeout_seconds: float = Field(120, gt=0, le=3600)

    @field_validator("repo")
    @classmethod
    def _repository(cls, value: str) -> str:
        return git_repository(value)

    @field_validator("output_dir")
    @classmethod
    def _writable(cls, value: str, info: ValidationInfo) -> str:
        repo = info.data.get("repo")
        if repo is not None:
            output_folder(repo, value, get_settings().writable_root)
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else git_ref(info.data.get("repo"), value)

    @field_validator("doc_types")
    @classmethod
    def _unique(cls, value: list[DocType]) -> list[DocType]:
        if len(set(value)) != len(value):
            raise ValueError("each document type at most once")
        return value


class ParallelDocsState(MultiAgentState, total=False):
    repo: str
    output_dir: str
    doc_types: list[str]
    ref: str | None
    packages: list[str] | None
    timeout_seconds: float
    written: dict[str, str]


def branch(state: dict[str, Any], doc_type: str, _index: int) -> dict[str, Any]:
    """What one `generate` branch is sent: the request's fields and its document type."""
    keys = ("task_id", "repo", "ref", "packages", "timeout_seconds")
    return {**{k: state.get(k) for k in keys}, "doc_type": doc_type}


async def generate(branch: dict[str, Any]) -> dict[str, Any]:
    doc_type = branch["doc_type"]
    payload: dict[str, Any] = {"repo": branch["repo"], "doc_type": doc_type}
    if branch.get("ref"):
        payload["ref"] = branch["ref"]
    if doc_type == "api" and branch.get("packages"):
        payload["packages"] = branch["packages"]
    step = f"docs:{doc_type}"
    try:
        result = await call_agent(
            "documentation",
            "GENERATE_DOCS",
            payload,
            timeout=branch["timeout_seconds"],
            correlation_id=branch["task_id"],
        )
    except AgentCallFailed as exc:
        return {
            "partial_results": {doc_type: {"error": exc.message}},
            **step_record("documentation", step, "failed", exc.message),
        }
    markdown = str(result.get("markdown", ""))
    document = {
        "markdown": markdown,
        "chars": len(markdown),
        "sources": result.get("sources", []),
        "commit": result.get("commit"),
    }
    return {"partial_results": {doc_type: document}, **step_record("documentation", step, "generated")}


def output_folder_of(state: ParallelDocsState) -> Path:
    """Checked again when writing: a symlink made since the run was accepted must not lead out."""
    return output_folder(state["repo"], state["output_dir"], get_settings().writable_root)


def _replace(target: Path, text: str) -> None:
    """Write through a new file renamed over the target: a symlink planted at the target is replaced,
    never followed out of the folder."""
    with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".docs-", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, target)


def write(state: ParallelDocsState) -> dict[str, Any]:
    """Write what was generated (rewriting the same files is harmless if the step runs again)."""
    results = state.get("partial_results") or {}
    written: dict[str, str] = {}
    failed = [t for t in state["doc_types"] if (results.get(t) or {}).get("error") or t not in results]
    try:
        folder = output_folder_of(state)
        folder.mkdir(parents=True, exist_ok=True)
        for doc_type in state["doc_types"]:
            if doc_type in failed:
                continue
            target = folder / f"{doc_type}.md"
            _replace(target, results[doc_type]["markdown"])
            written[doc_type] = str(target)
        index = ["# Documentation", ""] + [f"- [{t}]({t}.md)" for t in written]
        index += [
            f"- {t}: not generated ({(results.get(t) or {}).get('error', 'no result')})" for t in failed
        ]
        _replace(folder / "index.md", "\n".join(index) + "\n")
    except (OSError, ValueError) as exc:
        reason = f"output_dir: cannot write to {state['output_dir']}: {exc}"
        final = {
            "outcome": "write_failed",
            "ok": False,
            "reason": reason,
            "written": written,
            "report": docs_report(state, "write_failed", reason, written),
        }
        return {"written": written, "final_result": final, "updated_at": utc_now_iso()}
    if failed:
        kind, ok = "partial", False
        reason = f"{len(written)} of {len(state['doc_types'])} written; failed: {', '.join(failed)}"
    else:
        kind, ok, reason = "written", True, f"{len(written)} document(s) written to {folder}"
    final = {
        "outcome": kind,
        "ok": ok,
        "reason": reason,
        "written": written,
        "output_dir": str(folder),
        "report": docs_report(state, kind, reason, written),
    }
    return {"written": written, "final_result": final, "updated_at": utc_now_iso()}


conclude = concluder("documentation was not written")


def build_parallel_docs_graph() -> StateGraph:
    return map_reduce(
        ParallelDocsState,
        "doc_types",
        Step("generate", generate, retry=AGENT_RETRY),
        ("write", write),
        payload=branch,
        then=[("conclude", conclude)],
    )
