"""GENERATE_DOCS and UPDATE_README against real git repositories the tests build."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from pydantic import ValidationError

from services.documentation.generate import generate_docs
from services.documentation.models import DocsError, GenerateDocsPayload, UpdateReadmePayload
from services.documentation.readme_update import update_readme
from shared.git import file_at, run_git
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

CORE = '''"""Arithmetic helpers."""

from collections.abc import Sequence

__all__ = ["add", "mean", "Accumulator", "fetch"]


def add(a: int, b: int = 2) -> int:
    """Sum of two numbers."""
    return a + b


def mean(values: Sequence[float], *, default: float | None = None) -> float | None:
    return sum(values) / len(values) if values else default


async def fetch(url: str, timeout: float=3.5, **headers: str) -> bytes:
    return b""


def not_exported(x):
    return x


def _private(y):
    return y


class Accumulator:
    """Keeps a running total."""

    def __init__(self, start: int = 0) -> None:
        self.total = start

    def push(
        self,
        value: int,  # the amount
        *more: int,
    ) -> "Accumulator":
        self.total += value + sum(more)
        return self

    def _reset(self) -> None:
        self.total = 0
'''
UTIL = """import os


def slugify(text: str, sep: str = "-") -> str:
    return sep.join(text.lower().split())


def _helper() -> None:
    pass
"""
CLI = """import argparse


def main() -> int:
    parser = argparse.ArgumentParser(prog="calc", description="Add numbers from the command line.")
    parser.add_argument("numbers", nargs="+", type=int, help="numbers to add")
    parser.add_argument("--verbose", action="store_true", help="explain each step")
    parser.parse_args()
    return 0
"""
BROKEN_CLI = "import not_installed_module_xyz\n\n\ndef main() -> None:\n    pass\n"
SETTINGS = """import os

from pydantic_settings import BaseSettings, SettingsConfigDict

API_URL = os.environ["CALC_API_URL"]
DEBUG = os.getenv("CALC_DEBUG", "0")
CACHE = os.environ.get("CALC_CACHE_DIR", default="/tmp/calc")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALC_")

    port: int = 8080
    token: str
"""
PYPROJECT = """[project]
name = "calc"
version = "1.2.0"
requires-python = ">=3.11"
dependencies = ["httpx"]

[project.scripts]
calc = "calc.cli:main"
calc-broken = "calc.broken:main"
"""
README = """# calc

A calculator library.

## API

<!-- devtools:api:start -->
old generated text
<!-- devtools:api:end -->

Footer text stays.   \n"""


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "calc")
    repo.commit(
        "initial",
        {
            "pyproject.toml": PYPROJECT,
            "README.md": README,
            "calc/__init__.py": '"""The calc package."""\n',
            "calc/core.py": CORE,
            "calc/util.py": UTIL,
            "calc/cli.py": CLI,
            "calc/broken.py": BROKEN_CLI,
            "calc/_internal.py": "def hidden(): pass\n",
            "calc/settings.py": SETTINGS,
            "tests/test_core.py": "def test_nothing(): pass\n",
            "examples/basic.py": "from calc.core import add\n\nprint(add(1))\n",
            "Dockerfile": "FROM python:3.12-slim\nENV CALC_PORT=8080 \\\n    CALC_DEBUG=0\nEXPOSE 8080\n"
            'CMD ["python", "-m", "calc.cli"]\n',
            "docker-compose.yml": "services:\n  calc:\n    build: .\n    ports: ['8080:8080']\n"
            "    environment:\n      CALC_API_URL: http://api\n    depends_on: [redis]\n  redis:\n"
            "    image: redis:7\n",
            "Makefile": ".PHONY: test run\n\n# Run the tests\ntest:\n\tpytest\n\n"
            "run: ## Start the app\n\tpython -m calc\n",
        },
    )
    return repo


def test_api_reference_lists_every_public_function_with_its_exact_signature(
    repo: GitRepo, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="api", output_dir=str(out)))
    markdown = result.markdown
    # every public function, exactly as the source writes it (spacing and defaults included)
    for signature in (
        "def add(a: int, b: int = 2) -> int",
        "def mean(values: Sequence[float], *, default: float | None = None) -> float | None",
        "async def fetch(url: str, timeout: float=3.5, **headers: str) -> bytes",
        'def slugify(text: str, sep: str = "-") -> str',
        "def main() -> int",
        "def __init__(self, start: int = 0) -> None",
        'def push(self, value: int, *more: int) -> "Accumulator"',
    ):
        assert signature in markdown, signature
    assert "Sum of two numbers." in markdown and "Keeps a running total." in markdown
    # private names, names left out of __all__, private modules: absent
    for hidden in ("_private", "not_exported", "_helper", "_reset", "hidden", "calc._internal"):
        assert hidden not in markdown, hidden
    # the tests folder is not part of the package
    assert "test_nothing" not in markdown
    modules = {m.module: m for m in result.modules or []}
    assert set(modules) == {"calc", "calc.core", "calc.util", "calc.cli", "calc.broken", "calc.settings"}
    assert [f.name for f in modules["calc.core"].functions] == ["add", "mean", "fetch"]
    assert Path(result.output_path or "") == out / "api.md"
    assert (out / "api.md").read_text() == markdown


def test_api_reference_of_a_ref_not_the_working_tree(repo: GitRepo) -> None:
    first = repo.head()
    repo.commit("more", {"calc/extra.py": "def later(n: int) -> int:\n    return n\n"})
    old = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="api", ref=first))
    new = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="api"))
    assert old.commit == first and new.commit is None
    assert "later(n: int) -> int" not in old.markdown
    assert "later(n: int) -> int" in new.markdown


def test_user_guide_has_the_real_help_text_and_says_why_a_script_did_not_run(repo: GitRepo) -> None:
    result = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="user_guide"))
    scripts = {s.name: s for s in result.scripts or []}
    calc = scripts["calc"]
    assert calc.help_text is not None
    assert calc.help_text.startswith("usage: calc [-h] [--verbose] numbers [numbers ...]")
    assert "Add numbers from the command line." in calc.help_text
    assert calc.help_text in result.markdown
    broken = scripts["calc-broken"]
    assert broken.help_text is None
    assert "No module named 'not_installed_module_xyz'" in (broken.not_run_reason or "")
    assert "not_installed_module_xyz" in result.markdown
    assert "A calculator library." in result.markdown  # from the README
    assert "## Overview" in result.markdown and "### API" in result.markdown  # README headings demoted
    assert "old generated text" not in result.markdown  # generated sections are not fed back in
    assert "print(add(1))" in result.markdown  # the example


def test_deployment_guide_lists_env_vars_the_code_reads(repo: GitRepo) -> None:
    result = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="deployment_guide"))
    variables = {v.name: v for v in result.env_vars or []}
    assert set(variables) == {"CALC_API_URL", "CALC_DEBUG", "CALC_CACHE_DIR", "CALC_PORT", "CALC_TOKEN"}
    assert variables["CALC_API_URL"].required and variables["CALC_API_URL"].locations == [
        "calc/settings.py:5"
    ]
    assert variables["CALC_DEBUG"].default == '"0"' and not variables["CALC_DEBUG"].required
    assert variables["CALC_CACHE_DIR"].default == '"/tmp/calc"'
    assert variables["CALC_PORT"].default == "8080"
    assert variables["CALC_TOKEN"].required
    markdown = result.markdown
    assert "| `CALC_API_URL` | yes |" in markdown
    assert "`FROM python:3.12-slim`" in markdown and "`EXPOSE 8080`" in markdown
    assert "`ENV CALC_PORT=8080 CALC_DEBUG=0`" in markdown
    assert "| calc | `.` | `8080:8080` | `CALC_API_URL` | redis |" in markdown
    assert "- `make test`: Run the tests" in markdown and "- `make run`: Start the app" in markdown
    assert "Requires Python `>=3.11`" in markdown


def test_update_readme_in_place_keeps_everything_outside_the_markers(repo: GitRepo) -> None:
    result = update_readme(UpdateReadmePayload(repo=str(repo.path), section="api"))
    text = (repo.path / "README.md").read_bytes().decode()
    before, _, rest = README.partition("<!-- devtools:api:start -->")
    _, _, after = rest.partition("<!-- devtools:api:end -->")
    assert result.changed
    assert text.startswith(before + "<!-- devtools:api:start -->\n")
    assert text.endswith("<!-- devtools:api:end -->" + after)  # trailing spaces of the footer too
    assert "old generated text" not in text
    assert "def add(a: int, b: int = 2) -> int" in text
    assert "## calc API reference" in text  # its title demoted below the README's own
    # a second run finds nothing to change
    assert not update_readme(UpdateReadmePayload(repo=str(repo.path), section="api")).changed


def test_update_readme_on_a_branch_commits_there_only(repo: GitRepo) -> None:
    main_before = repo.head()
    result = update_readme(
        UpdateReadmePayload(repo=str(repo.path), section="api", mode="branch", branch="docs/api")
    )
    assert result.changed and result.branch == "docs/api" and result.commit
    assert run_git(repo.path, "rev-parse", "docs/api").strip() == result.commit
    assert repo.head() == main_before
    assert (repo.path / "README.md").read_text() == README  # the working tree is untouched
    committed = file_at(repo.path, "docs/api", "README.md") or ""
    assert "def add(a: int, b: int = 2) -> int" in committed
    changed = run_git(repo.path, "diff", "--name-only", main_before, "docs/api").split()
    assert changed == ["README.md"]
    with pytest.raises(DocsError, match="branch: 'docs/api' already exists"):
        update_readme(
            UpdateReadmePayload(repo=str(repo.path), section="api", mode="branch", branch="docs/api")
        )


def test_llm_prose_goes_on_top_of_the_generated_reference(repo: GitRepo) -> None:
    model = FakeListChatModel(responses=["calc offers small arithmetic helpers."])
    result = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="api"), chat_model=model)
    assert result.llm_prose == "calc offers small arithmetic helpers."
    assert result.markdown.startswith("# calc API reference\n\ncalc offers small arithmetic helpers.\n")
    assert "def add(a: int, b: int = 2) -> int" in result.markdown


def test_bad_input_gives_clear_errors(repo: GitRepo, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(DocsError, match="repo: not a git repository"):
        generate_docs(GenerateDocsPayload(repo=str(tmp_path / "plain"), doc_type="api"))
    with pytest.raises(DocsError, match="ref: unknown ref 'v9'"):
        generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="api", ref="v9"))
    with pytest.raises(ValidationError, match="doc_type"):
        GenerateDocsPayload(repo=str(repo.path), doc_type="novel")  # type: ignore[arg-type]
    with pytest.raises(DocsError, match="packages: not found in the repository: nope"):
        generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="api", packages=["nope"]))
    (repo.path / "README.md").write_text("# calc\nno markers here\n")
    with pytest.raises(DocsError, match="readme: needs exactly one <!-- devtools:api:start -->"):
        update_readme(UpdateReadmePayload(repo=str(repo.path), section="api"))
    with pytest.raises(ValidationError, match="doc_type: required when section 'intro'"):
        UpdateReadmePayload(repo=str(repo.path), section="intro")


class RecordingModel(FakeListChatModel):
    """A scripted model that also keeps what it was shown."""

    shown: list[str] = []

    def _call(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.shown.append(str(messages[-1].content))
        return super()._call(messages, *args, **kwargs)


def failing_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([]))  # nothing scripted: every call raises


def test_a_failing_model_keeps_the_generated_document(repo: GitRepo) -> None:
    payload = GenerateDocsPayload(repo=str(repo.path), doc_type="api")
    failed = generate_docs(payload, chat_model=failing_model())
    plain = generate_docs(payload)
    assert failed.markdown == plain.markdown and failed.modules == plain.modules
    assert failed.llm_prose is None
    assert failed.llm_warning is not None and failed.llm_warning.startswith("no LLM prose: the model call")
    assert plain.llm_warning is None


def test_update_readme_with_a_failing_model_still_updates_the_section(repo: GitRepo) -> None:
    payload = UpdateReadmePayload(repo=str(repo.path), section="api")
    result = update_readme(payload, chat_model=failing_model())
    assert result.changed and "def add(a: int, b: int = 2) -> int" in result.section_text
    assert result.llm_warning is not None and "model call failed" in result.llm_warning
    assert "def add(a: int, b: int = 2) -> int" in (repo.path / "README.md").read_text()


def test_user_and_deployment_guides_get_the_models_introduction(repo: GitRepo) -> None:
    user_model = RecordingModel(responses=["calc adds numbers from the command line."], shown=[])
    user = generate_docs(
        GenerateDocsPayload(repo=str(repo.path), doc_type="user_guide"), chat_model=user_model
    )
    deploy_model = RecordingModel(responses=["calc runs in a container on port 8080."], shown=[])
    deploy = generate_docs(
        GenerateDocsPayload(repo=str(repo.path), doc_type="deployment_guide"), chat_model=deploy_model
    )

    assert user.llm_prose == "calc adds numbers from the command line."
    assert user.markdown.startswith("# calc user guide\n\ncalc adds numbers from the command line.\n")
    assert "usage: calc [-h] [--verbose]" in user_model.shown[0]  # the model saw the real document
    assert "usage: calc [-h] [--verbose]" in user.markdown
    assert deploy.llm_prose == "calc runs in a container on port 8080."
    assert deploy.markdown.split("\n")[2] == "calc runs in a container on port 8080."
    assert "| `CALC_API_URL` | yes |" in deploy_model.shown[0]
    assert "| `CALC_API_URL` | yes |" in deploy.markdown


def test_update_readme_puts_the_models_introduction_in_the_section(repo: GitRepo) -> None:
    model = FakeListChatModel(responses=["The calc API at a glance."])
    result = update_readme(UpdateReadmePayload(repo=str(repo.path), section="api"), chat_model=model)
    assert result.llm_warning is None
    assert result.section_text.startswith("## calc API reference\n\nThe calc API at a glance.\n")
    assert "The calc API at a glance." in (repo.path / "README.md").read_text()


def test_user_guide_of_a_ref_runs_scripts_with_the_repositorys_virtualenv(repo: GitRepo) -> None:
    # The untracked .venv exists only in the repository folder, never in the ref's worktree.
    venv_python = repo.path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\necho 'usage: help from the repository virtualenv'\n")
    venv_python.chmod(0o755)
    result = generate_docs(GenerateDocsPayload(repo=str(repo.path), doc_type="user_guide", ref="main"))
    helps = {s.name: s.help_text for s in result.scripts or []}
    assert helps["calc"] == "usage: help from the repository virtualenv"
