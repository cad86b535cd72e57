"""The user guide: the README, the real `--help` of each console script, and the examples folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.documentation.markers import demote_headings, strip_generated_sections
from services.documentation.models import ScriptHelp
from services.documentation.sources import read_pyproject, relative_posix

README_NAMES = ("README.md", "README.rst", "README.txt", "README")
EXAMPLE_DIRS = ("examples", "example")
EXAMPLE_LANGUAGES = {".py": "python", ".sh": "bash", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
                     ".json": "json", ".txt": "text", ".md": ""}  # fmt: skip
_CREDENTIAL_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_SECRET_ACCESS_KEY")
MAX_EXAMPLES = 10
MAX_EXAMPLE_LINES = 150
# Runs the entry point the way its generated console script would, with argv = [name, "--help"].
_RUNNER = (
    "import importlib, sys\n"
    "name, target = sys.argv[1], sys.argv[2]\n"
    "module, _, attribute = target.partition(':')\n"
    "obj = importlib.import_module(module.strip())\n"
    "for part in attribute.strip().split('.'):\n"
    "    obj = getattr(obj, part)\n"
    "sys.argv = [name, '--help']\n"
    "result = obj()\n"
    "sys.exit(result if isinstance(result, int) else 0)\n"
)


def find_readme(tree: Path) -> Path | None:
    return next((tree / name for name in README_NAMES if (tree / name).is_file()), None)


def script_interpreter(tree: Path, repo: Path | None = None) -> Path:
    """The repository's own virtualenv when it has one, else this interpreter. A worktree of a ref
    never holds the untracked `.venv`, so the original repository's is looked for next."""
    for folder in (tree, repo) if repo is not None else (tree,):
        for candidate in (folder / ".venv" / "bin" / "python", folder / "venv" / "bin" / "python"):
            if candidate.is_file():
                return candidate
    return Path(sys.executable)


def console_scripts(tree: Path) -> dict[str, str]:
    scripts = read_pyproject(tree).get("project", {}).get("scripts", {})
    return {str(name): str(target) for name, target in scripts.items()}


def script_help(
    tree: Path, name: str, entry_point: str, *, run: bool, timeout: float, repo: Path | None = None
) -> ScriptHelp:
    result = ScriptHelp(name=name, entry_point=entry_point)
    if ":" not in entry_point:
        result.not_run_reason = f"entry point {entry_point!r} is not of the form module:attribute"
        return result
    if not run:
        result.not_run_reason = "running console scripts was switched off (run_scripts=false)"
        return result
    source_roots = [str(tree), str(tree / "src")]
    env = {k: v for k, v in os.environ.items() if not _is_credential(k)}
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="100", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([*source_roots, *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [str(script_interpreter(tree, repo)), "-c", _RUNNER, name, entry_point]
    try:
        completed = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        result.not_run_reason = f"`{name} --help` did not finish within {timeout:.0f}s"
        return result
    output = (completed.stdout or completed.stderr).strip()
    if completed.returncode != 0 or not output:
        last = (completed.stderr or completed.stdout).strip().splitlines()
        detail = last[-1] if last else "no output"
        result.not_run_reason = f"`{name} --help` exited with {completed.returncode}: {detail}"
        return result
    result.help_text = "\n".join(line.rstrip() for line in output.splitlines())
    return result


def _is_credential(name: str) -> bool:
    """The repository's code runs here: keep the platform's settings and any keys out of its reach."""
    return name.startswith(("DEVTOOLS_", "LANGSMITH_", "LANGCHAIN_")) or name.endswith(_CREDENTIAL_SUFFIXES)


def examples(tree: Path) -> list[Path]:
    found: list[Path] = []
    for folder in EXAMPLE_DIRS:
        if (tree / folder).is_dir():
            found += sorted(
                p for p in (tree / folder).rglob("*") if p.is_file() and p.suffix in EXAMPLE_LANGUAGES
            )
    return found[:MAX_EXAMPLES]


def build_user_guide(
    tree: Path, project: str, *, run_scripts: bool, timeout: float, repo: Path | None = None
) -> tuple[str, list[ScriptHelp], list[str]]:
    """(markdown, scripts, source files used)."""
    sources: list[str] = []
    lines = [f"# {project} user guide", ""]
    readme = find_readme(tree)
    if readme is not None:
        sources.append(relative_posix(tree, readme))
        text = strip_generated_sections(readme.read_text(encoding="utf-8", errors="replace"))
        lines += [f"## Overview (from `{readme.name}`)", "", demote_headings(text).strip(), ""]
    scripts = [
        script_help(tree, name, target, run=run_scripts, timeout=timeout, repo=repo)
        for name, target in console_scripts(tree).items()
    ]
    if scripts:
        sources.append("pyproject.toml")
        lines += ["## Command-line interface", ""]
        for script in scripts:
            lines += [f"### `{script.name}`", "", f"Entry point: `{script.entry_point}`", ""]
            if script.help_text is not None:
                lines += [f"Output of `{script.name} --help`:", "", "```text", script.help_text, "```", ""]
            else:
                lines += [f"Help text not available: {script.not_run_reason}.", ""]
    example_files = examples(tree)
    if example_files:
        lines += ["## Examples", ""]
        for path in example_files:
            relative = relative_posix(tree, path)
            sources.append(relative)
            body = path.read_text(encoding="utf-8", errors="replace").splitlines()
            clipped = body[:MAX_EXAMPLE_LINES] + (["..."] if len(body) > MAX_EXAMPLE_LINES else [])
            fence = "````" if any(line.startswith("```") for line in clipped) else "```"
            lines += [f"### `{relative}`", "", fence + EXAMPLE_LANGUAGES[path.suffix], *clipped, fence, ""]
    if len(lines) == 2:
        lines += ["This repository has no README, console scripts or examples to build a guide from.", ""]
    return "\n".join(lines).rstrip() + "\n", scripts, sources
