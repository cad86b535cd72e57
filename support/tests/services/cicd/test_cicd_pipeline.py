"""RUN_PIPELINE against repositories the tests create: real git, the repo's own tests, real processes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import ValidationError

from services.cicd.errors import CicdError, NoTestCommandError, TestsFailedError
from services.cicd.pipeline import RunPipelinePayload, run_pipeline
from shared.bus import ErrorClass, classify
from shared.git import run_git
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
    assert result.failed_tests == ["test_mixed::test_broken"]


def test_require_pass_answers_failing_tests_as_a_permanent_error_naming_them(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.commit("mixed tests", {"test_mixed.py": MIXED_TESTS})
    payload = RunPipelinePayload(repo=str(repo.path), ref="main", require_pass=True)

    with pytest.raises(TestsFailedError) as failed:
        run_pipeline(payload, data_dir=tmp_path / "data")

    info = classify(failed.value)
    assert (info.code, info.error_class) == ("tests_failed", ErrorClass.PERMANENT)
    assert "1 failed" in str(failed.value) and "test_mixed::test_broken" in str(failed.value)
    # Passing tests are a plain result, require_pass or not.
    repo.commit("fixed", {"test_mixed.py": "def test_fine(): assert True\n"})
    assert run_pipeline(payload, data_dir=tmp_path / "data").status == "passed"


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


MOCHA_LIKE = textwrap.dedent(
    """
    // Prints a mocha-style summary: counts on lines of their own, failure details after them.
    console.log("  3 passing (4ms)");
    console.log("  1 pending");
    console.log("  1 failing");
    console.log("");
    console.log("  1) cart totals an empty cart:");
    console.log("     AssertionError: expected NaN to equal 0");
    process.exit(1);
    """
)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not on PATH")
def test_package_json_test_script_is_detected_as_npm_test(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "node-repo")
    package = {"name": "cart", "version": "1.0.0", "private": True, "scripts": {"test": "node test.js"}}
    repo.commit("node project", {"package.json": json.dumps(package), "test.js": MOCHA_LIKE})

    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")

    assert (result.command, result.command_source) == ("npm test", "detected:npm")
    assert (result.status, result.exit_code) == ("failed", 1)
    assert (result.passed, result.failed, result.skipped, result.counts_source) == (3, 1, 1, "summary")
    assert "expected NaN to equal 0" in result.log_tail


def test_makefile_test_target_is_detected_as_make_test(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "make-repo")
    makefile = "build:\n\t@echo building\n\ntest: build\n\t@echo '5 passed, 2 skipped'\n"
    repo.commit("make project", {"Makefile": makefile})

    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")

    assert (result.command, result.command_source) == ("make test", "detected:make")
    assert (result.status, result.passed, result.skipped, result.failed) == ("passed", 5, 2, 0)
    assert "building" in result.log_tail  # the real target ran, with its prerequisite


def test_makefile_without_test_target_is_not_a_test_command(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "make-repo")
    repo.commit("no tests", {"Makefile": "build:\n\t@echo building\ntest-data:\n\t@echo data\n"})
    with pytest.raises(NoTestCommandError):
        run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")


JUNIT_WRITER = textwrap.dedent(
    """
    mkdir -p reports
    cat > reports/junit.xml <<'XML'
    <testsuite name="shell" tests="3">
      <testcase name="adds"/>
      <testcase name="subtracts"><failure message="2 - 1 != 3"/></testcase>
      <testcase name="later"><skipped/></testcase>
    </testsuite>
    XML
    echo "99 passed"  # a misleading summary line: the JUnit report must win
    exit 1
    """
)


def test_junit_xml_setting_gives_counts_for_a_non_pytest_runner(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "shell-repo")
    config = 'test_command = "sh run_tests.sh"\njunit_xml = "reports/junit.xml"\n'
    repo.commit("shell runner", {"devtools.toml": config, "run_tests.sh": JUNIT_WRITER})

    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")

    assert (result.status, result.counts_source) == ("failed", "junit")
    assert (result.passed, result.failed, result.skipped, result.total) == (1, 1, 1, 3)


def test_without_junit_xml_setting_the_same_runner_counts_from_its_summary(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "shell-repo")
    repo.commit("shell runner", {"devtools.toml": 'test_command = "sh run_tests.sh"\n',
                                 "run_tests.sh": JUNIT_WRITER})  # fmt: skip
    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    assert (result.counts_source, result.passed) == ("summary", 99)


def test_the_repository_virtualenv_is_used_although_the_worktree_lacks_it(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "venv-repo")
    repo.commit("python project", {".gitignore": ".venv/\n", "pyproject.toml": '[project]\nname = "v"\n'})
    detected_ref = repo.head()
    repo.commit("probe", {"devtools.toml": 'test_command = "devtools-probe"\n'})
    # The developer's untracked virtualenv: only in the repository folder, never in a worktree.
    bin_dir = repo.path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    probe = bin_dir / "devtools-probe"
    probe.write_text('#!/bin/sh\necho "probe from $0"\n')
    probe.chmod(0o755)

    data_dir = tmp_path / "data"
    configured = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=data_dir)
    detected = run_pipeline(RunPipelinePayload(repo=str(repo.path), ref=detected_ref), data_dir=data_dir)

    assert configured.status == "passed", configured.log_tail
    assert f"probe from {probe}" in configured.log_tail
    assert detected.command_source == "detected:pytest"
    assert detected.command.startswith(f"{bin_dir / 'python'} -m pytest")
