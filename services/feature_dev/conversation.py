"""One OpenHands SDK conversation (file editor + terminal tools) working inside a git worktree."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import shared.llm  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before OpenHands/litellm load)
from services.feature_dev.models import ChangeKind, FeatureDevError

if TYPE_CHECKING:
    from openhands.sdk import LLM

log = logging.getLogger(__name__)

_KIND_GUIDANCE: dict[ChangeKind, str] = {
    "generate": "Implement the following change.",
    "refactor": (
        "Refactor the code as described below without changing its observable behaviour: "
        "keep public names and signatures unless the instruction says otherwise."
    ),
}


@dataclass(frozen=True)
class ConversationOutcome:
    final_message: str
    actions: int


def build_prompt(kind: ChangeKind, workspace: Path, instruction: str, files: list[str]) -> str:
    lines = [
        f"You are working in the git repository checked out at {workspace}.",
        _KIND_GUIDANCE[kind],
        "",
        instruction,
        "",
    ]
    if files:
        lines.append("Files expected to change (a hint, not a limit): " + ", ".join(files))
    lines += [
        f"Use absolute paths under {workspace} with the file editor.",
        "Do not run `git commit`, do not switch branches and do not push: your changes are committed "
        "for you when you finish.",
        "When you are done, call the finish tool with a short summary of what you changed.",
    ]
    return "\n".join(lines)


def run_conversation(
    llm: LLM, workspace: Path, kind: ChangeKind, instruction: str, files: list[str], max_iterations: int
) -> ConversationOutcome:
    """Let the agent edit `workspace`; raises FeatureDevError when the run fails or does not finish."""
    # Imported here: the SDK is an optional extra and slow to import; only this skill needs it.
    from openhands.sdk import Agent, Conversation, Tool
    from openhands.sdk.conversation import get_agent_final_response
    from openhands.sdk.conversation.state import ConversationExecutionStatus
    from openhands.sdk.event import ActionEvent
    from openhands.tools.file_editor import FileEditorTool
    from openhands.tools.terminal import TerminalTool

    agent = Agent(llm=llm, tools=[Tool(name=FileEditorTool.name), Tool(name=TerminalTool.name)])
    conversation = Conversation(
        agent=agent,
        workspace=str(workspace),
        persistence_dir=None,
        visualizer=None,
        max_iteration_per_run=max_iterations,
    )
    try:
        conversation.send_message(build_prompt(kind, workspace, instruction, files))
        try:
            conversation.run()
        except Exception as exc:  # the SDK wraps model and tool failures in its own errors
            cause = getattr(exc, "original_exception", None) or exc
            raise FeatureDevError(f"the agent conversation failed: {cause}") from exc
        status = conversation.state.execution_status
        events = list(conversation.state.events)
        if status != ConversationExecutionStatus.FINISHED:
            raise FeatureDevError(
                f"the agent did not finish (status {status.value}) within {max_iterations} steps; "
                "nothing was committed"
            )
        actions = sum(1 for e in events if isinstance(e, ActionEvent) and e.source == "agent")
        final = get_agent_final_response(events)
    finally:
        conversation.close()  # stops the terminal's tmux session
    log.info("feature-dev conversation finished", extra={"actions": actions, "kind": kind})
    return ConversationOutcome(final_message=final.strip(), actions=actions)
