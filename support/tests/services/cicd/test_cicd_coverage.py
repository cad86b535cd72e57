"""RUN_PIPELINE's changed-line coverage: real git branches, real pytest runs measured by coverage.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cicd.errors import CicdError
from services.cicd.pipeline import RunPipelinePayload, run_pipeline
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

PYPROJECT = '[project]\nname = "calc"\nversion = "0.1.0"\n'
OPS = "def add(a, b):\n    return a + b\n"
OPS_TEST = "from calc.ops import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"

# The feature branch appends lines 3-10 to calc/ops.py: `clamp` spans lines 5-10.
CLAMP = textwrap.dedent(
    """\


    def clamp(value, low, high):
        if value < low:
            return low
        if value > high:
            return high
        return value
    """
)
# Line 9 (`return high`) is the branch no test takes.
CLAMP_TEST_PARTIAL = (
    "\n\ndef test_clamp_low_and_inside():\n    from calc.ops import clamp\n\n"
    "    assert clamp(-1, 0, 5) == 0\n    assert clamp(3, 0, 5) == 3\n"
)
CLAMP_TEST_FULL = (
    CLAMP_TEST_PARTIAL
    + "\n\ndef test_clamp_high():\n    from calc.ops import clamp\n\n    assert clamp(9, 0, 5) == 5\n"
)
# A module only a subprocess of the tests runs: measured through coverage's start-up hook.
CLI = "import sys\n\nfrom calc.ops import add\n\nprint(add(int(sys.argv[1]), int(sys.argv[2])))\n"
CLI_TEST = textwrap.dedent(
    """
    import subprocess
    import sys


    def test_cli_in_a_subprocess():
        out = subprocess.run([sys.executable, "-m", "calc.cli", "2", "3"], capture_output=True, text=True)
        assert out.stdout.strip() == "5"
    """
)


def _calc_repo(path: Path, files: dict[str, str] | None = None) -> GitRepo:
    repo = GitRepo(path)
    repo.commit("calc", {"pyproject.toml": PYPROJECT, "calc/__init__.py": "", "calc/ops.py": OPS,
                         "tests/test_ops.py": OPS_TEST, **(files or {})})  # fmt: skip
    return repo


def test_a_fully_tested_feature_is_100_percent_covered(tmp_path: Path) -> None:
    repo = _calc_repo(tmp_path / "repo")
    repo.branch("feature")
    repo.commit("clamp", {"calc/ops.py": OPS + CLAMP, "tests/test_ops.py": OPS_TEST + CLAMP_TEST_FULL})
    repo.checkout("main")
    data_dir = tmp_path / "data"

    result = run_pipeline(
        RunPipelinePayload(repo=str(repo.path), ref="feature", coverage_base="main"), data_dir=data_dir
    )

    assert result.status == "passed" and result.passed == 3, result.log_tail
    assert result.command_source == "detected:pytest" and "coverage" not in result.command  # not rewritten
    coverage = result.coverage
    assert coverage is not None
    assert (coverage.changed_lines_percent, coverage.changed_lines, coverage.covered_lines) == (100.0, 6, 6)
    assert coverage.files["calc/ops.py"].model_dump() == {
        "changed_lines": 6,
        "covered_lines": 6,
        "missing": [],
    }
    assert coverage.ignored_files == {"tests/test_ops.py": "test file"}  # changed tests are not counted
    assert coverage.total_percent == 100.0
    assert coverage.base == "main" and coverage.note is None
    assert coverage.tool.startswith("coverage.py 7.")
    # The coverage data and the rc file are in the run's artifact folder; nothing lands in the checkout.
    assert Path(coverage.data_file).is_file()
    assert Path(coverage.data_file).parent == Path(result.log_path).parent / "coverage"
    assert not list(repo.path.glob(".coverage*"))
    dumped = result.model_dump(mode="json")["coverage"]
    assert {"changed_lines_percent", "changed_lines", "covered_lines", "total_percent", "files", "base",
            "tool", "note"} <= dumped.keys()  # fmt: skip


def test_an_untested_branch_lowers_the_figure_and_names_its_line(tmp_path: Path) -> None:
    # A configured pytest command is measured too (coverage starts through COVERAGE_PROCESS_START),
    # subprocesses of the tests included.
    repo = _calc_repo(tmp_path / "repo", {"devtools.toml": 'test_command = "python -m pytest -q tests"\n'})
    repo.branch("feature")
    repo.commit("clamp and cli", {"calc/ops.py": OPS + CLAMP, "calc/cli.py": CLI,
                                  "tests/test_ops.py": OPS_TEST + CLAMP_TEST_PARTIAL,
                                  "tests/test_cli.py": CLI_TEST})  # fmt: skip

    result = run_pipeline(
        RunPipelinePayload(repo=str(repo.path), ref="feature", coverage_base="main"),
        data_dir=tmp_path / "data",
    )

    assert result.status == "passed" and result.passed == 3, result.log_tail
    assert result.command == "python -m pytest -q tests"
    coverage = result.coverage
    assert coverage is not None and coverage.note is None
    assert coverage.files["calc/ops.py"].model_dump() == {
        "changed_lines": 6,
        "covered_lines": 5,
        "missing": [9],
    }
    # Three statements, all run by a subprocess of the tests only.
    assert coverage.files["calc/cli.py"].model_dump() == {
        "changed_lines": 3,
        "covered_lines": 3,
        "missing": [],
    }
    assert (coverage.changed_lines, coverage.covered_lines, coverage.changed_lines_percent) == (9, 8, 88.89)
    assert coverage.total_percent is not None and coverage.total_percent < 100
    assert set(coverage.ignored_files) == {"tests/test_ops.py", "tests/test_cli.py"}


def test_without_coverage_base_there_is_no_coverage_block(tmp_path: Path) -> None:
    repo = _calc_repo(tmp_path / "repo")
    result = run_pipeline(RunPipelinePayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    assert result.status == "passed"
    assert result.coverage is None and result.model_dump()["coverage"] is None
    assert not (Path(result.log_path).parent / "coverage").exists()


def test_only_tests_changed_gives_no_percentage_with_a_note(tmp_path: Path) -> None:
    repo = _calc_repo(tmp_path / "repo")
    base = repo.head()
    repo.commit("more tests", {"tests/test_more.py": "def test_more():\n    assert True\n"})

    result = run_pipeline(
        RunPipelinePayload(repo=str(repo.path), coverage_base=base), data_dir=tmp_path / "data"
    )

    coverage = result.coverage
    assert coverage is not None and coverage.base == base
    assert (coverage.changed_lines_percent, coverage.changed_lines) == (None, 0)
    assert coverage.note == f"no executable Python lines changed between {base} and the ref"
    assert coverage.total_percent == 100.0  # the run itself was measured


def test_a_non_python_project_runs_with_a_note(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "make-repo")
    repo.commit("make project", {"Makefile": "test:\n\t@echo '2 passed'\n"})
    repo.commit("more", {"Makefile": "test:\n\t@echo '3 passed'\n"})

    result = run_pipeline(
        RunPipelinePayload(repo=str(repo.path), coverage_base="HEAD~1"), data_dir=tmp_path / "data"
    )

    assert (result.status, result.passed) == ("passed", 3)
    coverage = result.coverage
    assert coverage is not None
    assert coverage.changed_lines_percent is None and coverage.tool is None
    assert coverage.note is not None and coverage.note.startswith("not a Python project")


def test_a_bad_coverage_base_is_refused(tmp_path: Path) -> None:
    repo = _calc_repo(tmp_path / "repo")
    with pytest.raises(ValidationError, match="coverage_base"):
        RunPipelinePayload(repo=str(repo.path), coverage_base="--output=/etc/passwd")
    with pytest.raises(CicdError, match="coverage_base: unknown ref 'nope'"):
        run_pipeline(
            RunPipelinePayload(repo=str(repo.path), coverage_base="nope"), data_dir=tmp_path / "data"
        )


def _venv(folder: Path, *, see_our_packages: bool) -> Path:
    """A virtualenv of the repository; with `see_our_packages` it imports our site-packages (coverage and
    pytest) through a plain path entry, so coverage's start-up .pth hook there is never run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    if see_our_packages:
        site_packages = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "coverage").is_dir())
        Path(site_packages, "devtools-test-packages.pth").write_text(ours + "\n")
    return python


def test_an_interpreter_without_coverage_runs_the_tests_unmeasured(tmp_path: Path) -> None:
    configured = "test_command = \"python -c 'print(1)'\"\n"
    repo = _calc_repo(tmp_path / "repo", {".gitignore": ".venv/\n", "devtools.toml": configured})
    python = _venv(repo.path / ".venv", see_our_packages=False)
    if subprocess.run([str(python), "-c", "import coverage"], capture_output=True).returncode == 0:
        pytest.skip("the base interpreter of this machine has coverage installed")
    base = repo.head()
    repo.commit("clamp", {"calc/ops.py": OPS + CLAMP})

    result = run_pipeline(
        RunPipelinePayload(repo=str(repo.path), coverage_base=base), data_dir=tmp_path / "data"
    )

    assert result.status == "passed", result.log_tail
    coverage = result.coverage
    assert coverage is not None and coverage.changed_lines_percent is None and coverage.tool is None
    assert coverage.note == (
        f"coverage.py is not importable by {python}: ModuleNotFoundError: No module named 'coverage'; "
        "the tests ran unmeasured"
    )


def test_coverage_without_its_start_up_hook_wraps_the_detected_pytest_command(tmp_path: Path) -> None:
    repo = _calc_repo(tmp_path / "repo", {".gitignore": ".venv/\n"})
    python = _venv(repo.path / ".venv", see_our_packages=True)
    base = repo.head()
    repo.commit("clamp", {"calc/ops.py": OPS + CLAMP, "tests/test_ops.py": OPS_TEST + CLAMP_TEST_PARTIAL})
    data_dir = tmp_path / "data"

    detected = run_pipeline(RunPipelinePayload(repo=str(repo.path), coverage_base=base), data_dir=data_dir)

    assert detected.status == "passed" and detected.passed == 2, detected.log_tail
    assert detected.command.startswith(f"{python} -m coverage run --rcfile=")
    assert detected.coverage is not None and detected.coverage.note is None
    assert (detected.coverage.changed_lines_percent, detected.coverage.files["calc/ops.py"].missing) == (
        83.33,
        [9],
    )

    configured = run_pipeline(
        RunPipelinePayload(repo=str(repo.path), coverage_base=base, test_command="python -m pytest -q"),
        data_dir=data_dir,
    )

    assert configured.status == "passed" and configured.command == "python -m pytest -q"
    assert configured.coverage is not None and configured.coverage.changed_lines_percent is None
    assert configured.coverage.note is not None
    assert "does not start from COVERAGE_PROCESS_START" in configured.coverage.note
