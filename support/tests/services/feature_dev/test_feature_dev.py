"""Feature-dev on real git repositories, driven by OpenHands' TestLLM issuing real tool calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import shared.llm  # noqa: F401  (LITELLM_LOCAL_MODEL_COST_MAP before OpenHands loads)
from services.feature_dev.models import (
    FeatureDevError,
    FeatureDevRejected,
    GenerateCodePayload,
    RefactorCodePayload,
)
from services.feature_dev.skill import NO_LLM_MESSAGE, generate_code, refactor_code
from shared.git import run_git
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

openhands_sdk = pytest.importorskip("openhands.sdk")
pytest.importorskip("openhands.tools")
from openhands.sdk import Message, TextContent  # noqa: E402
from openhands.sdk.llm import MessageToolCall  # noqa: E402
from openhands.sdk.testing import TestLLM  # noqa: E402

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def tool_call(n: int, name: str, **arguments: Any) -> Message:
    call = MessageToolCall(id=f"call_{n}", name=name, arguments=json.dumps(arguments), origin="completion")
    return Message(role="assistant", content=[TextContent(text="")], tool_calls=[call])


def finish(n: int, message: str) -> Message:
    return tool_call(n, "finish", message=message)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"calc.py": CALC, "README.md": "# calc\n"})
    return repo


def branches(repo: GitRepo) -> list[str]:
    return run_git(repo.path, "branch", "--format=%(refname:short)").split()


def diff_without_index(repo: GitRepo, base: str, head: str) -> str:
    text = run_git(repo.path, "diff", "--no-color", base, head)
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("index "))


def test_scripted_edits_become_one_commit_on_a_new_branch(repo: GitRepo, tmp_path: Path) -> None:
    base = repo.head()
    root = repo.path
    # Each scripted answer is a real tool call the SDK executes in the worktree (whose path the
    # script learns from the prompt): two file-editor edits, one terminal command, then finish.
    llm = _ScriptedByWorkspace(
        lambda ws: [
            tool_call(
                1,
                "file_editor",
                command="str_replace",
                path=f"{ws}/calc.py",
                old_str="def sub(a, b):\n    return a - b\n",
                new_str="def sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n",
            ),
            tool_call(2, "terminal", command="mkdir -p tests && printf 'mul added\\n' > CHANGES.txt"),
            tool_call(
                3,
                "file_editor",
                command="create",
                path=f"{ws}/tests/test_mul.py",
                file_text="from calc import mul\n\n\ndef test_mul():\n    assert mul(3, 4) == 12\n",
            ),
            finish(4, "Added mul() with a test."),
        ]
    )
    payload = GenerateCodePayload(
        repo=str(root),
        instruction="Add a mul(a, b) function with a test",
        branch="feature/mul",
        files=["calc.py"],
    )
    result = generate_code(payload, llm=llm.build(), work_root=tmp_path / "work")

    assert result.outcome == "committed" and result.branch == "feature/mul"
    assert result.base_commit == base
    assert result.commit == run_git(root, "rev-parse", "feature/mul").strip()
    assert run_git(root, "rev-parse", f"{result.commit}^").strip() == base  # exactly one commit on top
    assert result.final_message == "Added mul() with a test."
    assert result.actions == 4
    assert diff_without_index(repo, base, result.commit) == (
        "diff --git a/CHANGES.txt b/CHANGES.txt\n"
        "new file mode 100644\n"
        "--- /dev/null\n"
        "+++ b/CHANGES.txt\n"
        "@@ -0,0 +1 @@\n"
        "+mul added\n"
        "diff --git a/calc.py b/calc.py\n"
        "--- a/calc.py\n"
        "+++ b/calc.py\n"
        "@@ -4,3 +4,7 @@ def add(a, b):\n"
        " \n"
        " def sub(a, b):\n"
        "     return a - b\n"
        "+\n"
        "+\n"
        "+def mul(a, b):\n"
        "+    return a * b\n"
        "diff --git a/tests/test_mul.py b/tests/test_mul.py\n"
        "new file mode 100644\n"
        "--- /dev/null\n"
        "+++ b/tests/test_mul.py\n"
        "@@ -0,0 +1,5 @@\n"
        "+from calc import mul\n"
        "+\n"
        "+\n"
        "+def test_mul():\n"
        "+    assert mul(3, 4) == 12\n"
    )
    assert (result.files_changed, result.insertions, result.deletions) == (3, 10, 0)
    assert {f.path: f.status for f in result.files} == {
        "CHANGES.txt": "A",
        "calc.py": "M",
        "tests/test_mul.py": "A",
    }
    # The user's checkout is untouched and the worktree is gone.
    assert repo.head() == base and (root / "calc.py").read_text() == CALC
    assert "worktree" not in run_git(root, "worktree", "list").split("\n", 1)[-1]
    message = run_git(root, "log", "-1", "--format=%s%n%an", result.commit).splitlines()
    assert message == ["feat: Add a mul(a, b) function with a test", "devtools feature-dev"]


def test_refactor_without_changes_leaves_no_branch_and_no_commit(repo: GitRepo, tmp_path: Path) -> None:
    before = branches(repo)
    llm = _ScriptedByWorkspace(
        lambda ws: [
            tool_call(1, "file_editor", command="view", path=f"{ws}/calc.py"),
            finish(2, "The code is already clean; nothing to refactor."),
        ]
    )
    result = refactor_code(
        RefactorCodePayload(repo=str(repo.path), instruction="Tidy calc.py"),
        llm=llm.build(),
        work_root=tmp_path / "work",
    )
    assert result.outcome == "no_change" and result.commit is None and result.branch is None
    assert result.final_message == "The code is already clean; nothing to refactor."
    assert branches(repo) == before


def test_no_llm_is_rejected_and_touches_nothing(repo: GitRepo) -> None:
    before = branches(repo)
    with pytest.raises(FeatureDevRejected, match="no LLM configured"):
        generate_code(GenerateCodePayload(repo=str(repo.path), instruction="Add mul"), llm=None)
    assert NO_LLM_MESSAGE.startswith("no LLM configured")
    assert branches(repo) == before


def test_failed_conversation_commits_nothing_and_removes_its_branch(repo: GitRepo, tmp_path: Path) -> None:
    before = branches(repo)
    # The model edits a file, then its service fails: the half-done edit must not be committed.
    llm = _ScriptedByWorkspace(
        lambda ws: [
            tool_call(1, "file_editor", command="create", path=f"{ws}/half.py", file_text="x = 1\n"),
        ]
    )
    with pytest.raises(FeatureDevError, match="conversation failed"):
        generate_code(
            GenerateCodePayload(repo=str(repo.path), instruction="Add half", branch="feature/half"),
            llm=llm.build(),
            work_root=tmp_path / "work",
        )
    assert branches(repo) == before


def test_bad_requests_name_the_problem(repo: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="instruction"):
        GenerateCodePayload(repo=str(repo.path), instruction="   ")
    with pytest.raises(ValidationError, match="files"):
        GenerateCodePayload(repo=str(repo.path), instruction="x", files=["../etc/passwd"])
    llm = TestLLM.from_messages([])
    with pytest.raises(FeatureDevError, match="unknown ref 'nope'"):
        generate_code(GenerateCodePayload(repo=str(repo.path), instruction="x", base_ref="nope"), llm=llm)
    with pytest.raises(FeatureDevError, match=r"not a git repository|does not exist"):
        generate_code(GenerateCodePayload(repo=str(tmp_path / "missing"), instruction="x"), llm=llm)
    repo.branch("taken")
    repo.checkout("main")
    with pytest.raises(FeatureDevError, match="branch: 'taken' already exists"):
        generate_code(GenerateCodePayload(repo=str(repo.path), instruction="x", branch="taken"), llm=llm)
    with pytest.raises(FeatureDevError, match="not a valid branch name"):
        generate_code(GenerateCodePayload(repo=str(repo.path), instruction="x", branch="bad..name"), llm=llm)
    assert llm.call_count == 0


class _ScriptedByWorkspace:
    """A TestLLM whose script is written once the worktree path is known (it is in the first prompt)."""

    def __init__(self, script: Any) -> None:
        self.script = script

    def build(self) -> TestLLM:
        outer = self

        class WorkspaceAwareTestLLM(TestLLM):
            def completion(self, messages: list[Message], *args: Any, **kwargs: Any) -> Any:
                if self.call_count == 0 and self.remaining_responses == 0:
                    for item in outer.script(_workspace_from(messages)):
                        self._scripted_responses.append(item)
                return super().completion(messages, *args, **kwargs)

        return WorkspaceAwareTestLLM.from_messages([])


def _workspace_from(messages: list[Message]) -> str:
    for message in messages:
        for part in message.content:
            text = getattr(part, "text", "")
            marker = "checked out at "
            if marker in text:
                return text.split(marker, 1)[1].split(".\n", 1)[0].strip()
    raise AssertionError("the prompt did not name the workspace")
