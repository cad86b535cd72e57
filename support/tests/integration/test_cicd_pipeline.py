"""RUN_PIPELINE against repositories the tests create: real git, the repo's own tests, real processes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import ValidationError

from services.cicd.errors import CicdError, NoTestCommandError
from services.cicd.pipeline import RunPipelinePayload, run_pipeline
from shared.lib.git import run_git
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

MIXED_TESTS = textwrap.dedent(
    """
    import pytest

    def test_one(): assert 1 + 1 == 2
    def test_two(): assert "a".upper() == "A"
    def test_three(): assert [1, 2][-1] == 2
    def test_broken(): assert 2 * 2 == 5, "arithmetic is broken"

    @pytest.mark.skip(reason="not today")
    def test_skipped(): pass
    """
)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"pyproject.toml": '[project]\nname = "sample"\nversion = "0.1.0"\n',
                            "test_ok.py": "def test_ok():\n    assert True\n"})  # fmt: skip
    return repo


def test_failing_test_gives_failed_pipeline_with_counts(repo: GitRepo, tmp_path: Path) -> None:
    repo.branch("feature")
    repo.commit("mixed tests", {"test_mixed.py": MIXED_TESTS})
    repo.checkout("main")  # the working copy is on main: the pipeline must test the ref, not the checkout
    data_dir = tmp_path / "data"

    result = run_pipeline(RunPipelinePayload(repo=str(repo.path), ref="feature"), data_dir=data_dir)

    assert result.status == "failed"
    assert result.exit_code == 1
    assert (result.passed, result.failed, result.skipped, result.errors) == (4, 1, 1, 0)
    assert result.total == 6
    assert result.counts_source == "junit"
    assert result.command_source == "detected:pytest"
    assert "arithmetic is broken" in result.log_tail
    assert result.commit == run_git(repo.path, "rev-parse", "feature").strip()
    # The worktree is gone, and git forgot it; the log stays for later reading.
    assert not any((data_dir / "worktrees" / "cicd").iterdir())
    assert "wt-" not in run_git(repo.path, "worktree", "list")
    assert "arithmetic is broken" in Path(result.log_path).read_text()


def test_passing_tests_give_passed_pipeline(repo: GitRepo, tmp_path: Path) -> None:
    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    assert result.status == "passed"
    assert (result.exit_code, result.passed, result.failed, result.total) == (0, 1, 0, 1)


def test_configured_command_without_junit_counts_from_summary(repo: GitRepo, tmp_path: Path) -> None:
    script = "echo 'Tests: 2 failed, 7 passed, 9 total'; exit 3"
    repo.commit("configure", {"devtools.toml": f'test_command = "{script}"\n'})
    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    assert result.command_source == "devtools.toml"
    assert (result.status, result.exit_code) == ("failed", 3)
    assert (result.passed, result.failed, result.counts_source) == (7, 2, "summary")


def test_configured_pytest_command_still_reports_junit_counts(repo: GitRepo, tmp_path: Path) -> None:
    pyproject = (
        '[project]\nname = "sample"\nversion = "0.1.0"\n\n[tool.devtools]\ntest_command = "pytest -q"\n'
    )
    repo.commit("configure", {"pyproject.toml": pyproject, "test_mixed.py": MIXED_TESTS})
    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    assert result.command == "pytest -q"
    assert (result.passed, result.failed, result.skipped, result.counts_source) == (4, 1, 1, "junit")


def test_command_sees_no_devtools_variables(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVTOOLS_API_TOKEN", "secret-token-value")
    repo.commit("env probe", {"devtools.toml": "test_command = \"env | grep -c '^DEVTOOLS_' || true\"\n"})
    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    assert result.status == "passed"
    assert result.log_tail.splitlines()[-1] == "0"
    assert "secret-token-value" not in result.log_tail


def test_timeout_kills_the_whole_process_group(repo: GitRepo, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"sleep 300 & echo $! > {pid_file}; wait"
    repo.commit("hangs", {"devtools.toml": f'test_command = "{command}"\ntimeout_seconds = 1\n'})

    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")

    assert result.status == "timed_out"
    assert result.timed_out and result.exit_code is None
    assert "killed after 1s timeout" in result.log_tail
    child = int(pid_file.read_text())
    # The background sleep was in the command's process group: it must be gone (or a reaped-by-init zombie).
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status not in ("Z", "X")


def test_llm_diagnosis_is_added_to_a_failed_run(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit("failing", {"devtools.toml": "test_command = \"echo '1 failed, 2 passed'; exit 1\"\n"})
    model = FakeListChatModel(responses=["test_broken asserts 2*2 == 5; fix the expectation."])
    result = run_pipeline(
        RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data", chat_model=model
    )
    assert (result.status, result.failed, result.passed) == ("failed", 1, 2)  # deterministic part unchanged
    assert result.diagnosis == "test_broken asserts 2*2 == 5; fix the expectation."
    passing = run_pipeline(RunPipelinePayload(repo=str(repo.path), test_command="true"),
                           data_dir=tmp_path / "data", chat_model=model)  # fmt: skip
    assert passing.status == "passed" and passing.diagnosis is None


def test_bad_input_is_refused_with_a_clear_error(repo: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ref"):
        RunPipelinePayload(repo=str(repo.path), ref="--upload-pack=evil")
    with pytest.raises(ValidationError, match="timeout_seconds"):
        RunPipelinePayload(repo=str(repo.path), timeout_seconds=0)
    with pytest.raises(CicdError, match="unknown ref 'nope'"):
        run_pipeline(RunPipelinePayload(repo=str(repo.path), ref="nope"), data_dir=tmp_path / "data")
    with pytest.raises(CicdError, match="does not exist"):
        run_pipeline(RunPipelinePayload(repo=str(tmp_path / "missing")), data_dir=tmp_path / "data")


def test_repo_without_any_test_command_is_an_error(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "docs-only")
    repo.commit("docs", {"README.md": "# nothing to test\n"})
    with pytest.raises(NoTestCommandError, match="test_command"):
        run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
