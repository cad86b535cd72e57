"""Line coverage of what a change adds: coverage.py measures RUN_PIPELINE's test run, git names the lines.

How the tests come to run under coverage. We do not rewrite the user's command: we set
`COVERAGE_PROCESS_START` to an rc file of ours in the run's artifact folder. coverage.py installs a
start-up hook (`a1_coverage.pth` in site-packages) that starts measuring in every Python process
that sees this variable, so the detected `python -m pytest`, a configured `pytest -q`, a `make test`
that calls pytest, pytest-xdist workers and the subprocesses the tests start are all measured,
from interpreter start-up (module-level lines included), with nothing written into the checkout
and the command in the result exactly the one that ran. Each process writes its own data file
(`parallel = True`) next to `data_file`; we combine them afterwards. Our rc is the only coverage
configuration read (the repository's `[tool.coverage]` is not), so every run is measured alike:
lines only (`branch = False`), only files of the checkout (`source`).

A quick probe, with the same environment, tells beforehand whether the interpreter the pipeline
uses (`interpreter_for`) imports coverage and whether its hook starts it. Without the hook (an
older coverage.py) the detected pytest command is wrapped in `python -m coverage run --rcfile=…`
instead; a configured command cannot be wrapped safely, so it runs unmeasured and `note` says
why. Without coverage at all the tests run as usual and `note` says why.

pytest-cov is the one thing we switch off (`--no-cov` in PYTEST_ADDOPTS, when the interpreter has
it): a second coverage started inside pytest pauses ours, which then keeps nothing of the tests.
Its options stay valid; its report and `--cov-fail-under` do not apply to this run.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import coverage
from coverage.exceptions import CoverageException
from pydantic import BaseModel, Field

from shared.git import GitError, added_lines, diff_text, run_git
from shared.process import run_command
from shared.project import is_python_project

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 60.0
_PROBE_MARKER = "devtools-coverage-probe"
_PROBE = (
    "import coverage, importlib.util; "
    f"print({_PROBE_MARKER!r}, coverage.__version__, coverage.Coverage.current() is not None, "
    "importlib.util.find_spec('pytest_cov') is not None)"
)
# Changed test code runs whenever the tests do; counting it would only flatter the figure.
_TEST_FILE = re.compile(r"^(test_.*|.*_test|conftest)\.py$")
# Variables of an outer coverage run (ours, when our own tests run under coverage) that would
# redirect or reconfigure the measurement of the user's command.
_OUTER_COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_FORCE_CONFIG", "COVERAGE_RCFILE")


class FileCoverage(BaseModel):
    changed_lines: int  # changed lines coverage.py counts as executable
    covered_lines: int
    missing: list[int]  # changed executable lines no test ran


class CoverageReport(BaseModel):
    """`result["coverage"]` of RUN_PIPELINE: line coverage of the lines `base...ref` adds or changes."""

    changed_lines_percent: float | None = None  # covered / changed * 100; None: nothing measurable
    changed_lines: int = 0
    covered_lines: int = 0
    total_percent: float | None = None  # line coverage of every measured file of the checkout
    files: dict[str, FileCoverage] = Field(default_factory=dict)
    ignored_files: dict[str, str] = Field(default_factory=dict)  # changed .py files not counted, and why
    base: str
    merge_base: str | None = None  # the commit the diff starts from
    tool: str | None = None  # "coverage.py 7.17.5": the version in the interpreter that ran the tests
    data_file: str | None = None  # the combined coverage data, in the run's artifact folder
    note: str | None = None  # why the percentage is None, or a caveat about it


@dataclass
class ChangedLinesCoverage:
    """One run's measurement: `prepare` before the test command runs, `report` after it."""

    base: str
    base_commit: str
    root: Path  # the worktree the tests run in
    repo: Path
    folder: Path  # in the run's artifact folder, never in the user's checkout
    python: str  # the interpreter the pipeline uses
    tool: str | None = None
    note: str | None = None  # set when the run goes unmeasured
    caveat: str | None = None  # what the measurement changed about the run, for the report's note
    _measuring: bool = field(default=False, init=False)

    @property
    def rc_file(self) -> Path:
        return self.folder / "coveragerc"

    @property
    def data_file(self) -> Path:
        return self.folder / ".coverage"

    def prepare(self, command: str, env: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The command and environment to run so that coverage measures it (unchanged when it cannot)."""
        if not is_python_project(self.root):
            self.note = "not a Python project: changed-line coverage is measured for Python repositories only"
            return command, env
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rc_file.write_text(_rc_text(self.data_file, self.root), encoding="utf-8")
        measured_env = {key: value for key, value in env.items() if key not in _OUTER_COVERAGE_VARIABLES}
        # COVERAGE_FILE beats the rc's data_file, so an inherited one must not send the data elsewhere.
        measured_env |= {"COVERAGE_PROCESS_START": str(self.rc_file), "COVERAGE_FILE": str(self.data_file)}
        version, hooked, pytest_cov, problem = self._probe(measured_env)
        if version is None:
            self.note = f"coverage.py is not importable by {self.python}: {problem}; the tests ran unmeasured"
            return command, env
        self.tool = f"coverage.py {version}"
        if not hooked:
            quoted = shlex.quote(self.python)
            detected = f"{quoted} -m pytest "
            if not command.startswith(detected):
                self.note = (
                    f"coverage.py {version} in {self.python} does not start from COVERAGE_PROCESS_START (it "
                    "has no start-up .pth hook; recent coverage.py releases install one), so the configured "
                    "test command ran unmeasured"
                )
                return command, env
            rc = shlex.quote(str(self.rc_file))
            command = f"{quoted} -m coverage run --rcfile={rc} -m pytest {command.removeprefix(detected)}"
        if pytest_cov and not env.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            # pytest-cov (`--cov` in the repository's addopts) would start a second coverage inside
            # pytest: ours pauses under it and keeps nothing of the tests. `--no-cov` keeps its
            # options valid and turns it off for this run (its own report and fail-under with it).
            addopts = measured_env.get("PYTEST_ADDOPTS", "")
            measured_env["PYTEST_ADDOPTS"] = f"{addopts} --no-cov".strip()
            self.caveat = "pytest-cov was turned off for this run (--no-cov): coverage.py measured it instead"
        self._measuring = True
        return command, measured_env

    def _probe(self, env: dict[str, str]) -> tuple[str | None, bool, bool, str]:
        """(coverage version or None, whether its start-up hook started it, whether pytest-cov is
        importable, what went wrong)."""
        probe_dir = self.folder / "probe"
        probe_env = env | {"COVERAGE_FILE": str(probe_dir / ".coverage")}
        probe_log = probe_dir / "probe.log"
        try:
            outcome = run_command(
                f"{shlex.quote(self.python)} -c {shlex.quote(_PROBE)}",
                cwd=self.root,
                log_path=probe_log,
                timeout=PROBE_TIMEOUT_SECONDS,
                env=probe_env,
            )
            output = probe_log.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
        finally:
            shutil.rmtree(probe_dir, ignore_errors=True)
        if outcome.timed_out:
            return None, False, False, f"`import coverage` did not finish in {PROBE_TIMEOUT_SECONDS:g}s"
        for line in output:
            words = line.split()
            if len(words) == 4 and words[0] == _PROBE_MARKER:
                return words[1], words[2] == "True", words[3] == "True", ""
        lines = [line.strip() for line in output if line.strip()]
        return None, False, False, lines[-1] if lines else f"exit code {outcome.exit_code}"

    def report(self, commit: str, *, timed_out: bool) -> CoverageReport:
        """Read the data the run left behind; call while the worktree still exists (coverage parses it)."""
        result = CoverageReport(base=self.base, tool=self.tool, note=self.note)
        try:
            result.merge_base = run_git(self.repo, "merge-base", self.base_commit, commit).strip()
            changed = added_lines(diff_text(self.repo, self.base_commit, commit, context=0))
        except GitError as exc:
            result.note = result.note or f"no diff between {self.base} and the ref: {exc}"
            return result
        if not self._measuring:
            return result
        try:
            cov = coverage.Coverage(data_file=str(self.data_file), config_file=str(self.rc_file))
            # `.coverage` itself exists only when something in the run combined the pieces already.
            cov.load()
            if any(self.folder.glob(f"{self.data_file.name}.*")):
                cov.combine([str(self.folder)], keep=False)
                cov.save()
            if not cov.get_data().measured_files():
                why = (
                    "the run timed out"
                    if timed_out
                    else f"the test command ran no Python of {self.python}, or a coverage measurement of "
                    "its own displaced this one"
                )
                result.note = f"no coverage data was written ({why})"
                return result
            result.data_file = str(self.data_file)
            result.total_percent = self._total_percent(cov)
            self._count_changed(cov, changed, result)
        except CoverageException as exc:
            result.note = f"coverage data could not be read: {exc}"
            return result
        if result.changed_lines:
            result.changed_lines_percent = round(result.covered_lines / result.changed_lines * 100, 2)
            if timed_out:
                result.note = "the run timed out: the figures cover only what ran before it was killed"
            else:
                result.note = self.caveat
        else:
            result.note = f"no executable Python lines changed between {self.base} and the ref"
        log.info(
            "changed-line coverage measured",
            extra={"base": self.base, "changed": result.changed_lines, "covered": result.covered_lines},
        )
        return result

    def _total_percent(self, cov: coverage.Coverage) -> float | None:
        statements = missing = 0
        for measured in cov.get_data().measured_files():
            if not Path(measured).is_relative_to(self.root):
                continue
            try:
                _, executable, _, not_run, _ = cov.analysis2(measured)
            except CoverageException:
                continue  # a file that is gone or not Python (coverage's own report skips these too)
            statements += len(executable)
            missing += len(not_run)
        return round((statements - missing) / statements * 100, 2) if statements else None

    def _count_changed(
        self, cov: coverage.Coverage, changed: dict[str, set[int]], into: CoverageReport
    ) -> None:
        for path, lines in sorted(changed.items()):
            if not path.endswith(".py") or not lines:
                continue
            if _TEST_FILE.match(PurePosixPath(path).name):
                into.ignored_files[path] = "test file"
                continue
            try:
                _, executable, _, not_run, _ = cov.analysis2(str(self.root / path))
            except CoverageException as exc:
                into.ignored_files[path] = f"not analysable: {exc}"
                continue
            changed_executable = lines & set(executable)
            missing = changed_executable & set(not_run)
            into.files[path] = FileCoverage(
                changed_lines=len(changed_executable),
                covered_lines=len(changed_executable) - len(missing),
                missing=sorted(missing),
            )
            into.changed_lines += len(changed_executable)
            into.covered_lines += len(changed_executable) - len(missing)


def _rc_text(data_file: Path, root: Path) -> str:
    def value(path: Path) -> str:
        return str(path).replace("$", "$$")  # coverage expands $VARIABLES in its settings

    # Only settings every coverage.py 5+ knows: an unknown one makes every measured process warn.
    return (
        "# Written by the devtools cicd agent for one RUN_PIPELINE run (COVERAGE_PROCESS_START).\n"
        "[run]\n"
        f"data_file = {value(data_file)}\n"
        "parallel = True\n"
        "branch = False\n"
        f"source =\n    {value(root)}\n"
        "disable_warnings = no-data-collected, module-not-measured, module-not-imported, couldnt-parse\n"
    )
