"""The deployment guide: Dockerfiles, compose files, pyproject, Makefile targets, environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from services.documentation.env_vars import environment_variables
from services.documentation.models import EnvVar
from services.documentation.sources import SKIPPED_DIRS, read_pyproject, relative_posix

_DOCKER_KEYS = ("FROM", "EXPOSE", "ENV", "ARG", "WORKDIR", "ENTRYPOINT", "CMD", "HEALTHCHECK", "USER")
_COMPOSE_NAMES = re.compile(r"^(?:docker-)?compose(?:\.[\w-]+)?\.ya?ml$")
_MAKE_TARGET = re.compile(r"^([A-Za-z0-9][\w./-]*)\s*:(?!=)([^#\n]*)(?:##\s*(.*))?$")


def _project_files(tree: Path, matches: Any) -> list[Path]:
    found = []
    for path in sorted(tree.rglob("*")):
        relative = path.relative_to(tree)
        if any(part in SKIPPED_DIRS or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if path.is_file() and matches(path.name):
            found.append(path)
    return found


def dockerfile_section(tree: Path, path: Path) -> list[str]:
    instructions: list[str] = []
    logical = ""
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stripped = raw.rstrip()
        if stripped.lstrip().startswith("#"):
            continue
        if stripped.endswith("\\"):  # a continued instruction
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword = logical.strip().split(" ", 1)[0].upper()
        if keyword in _DOCKER_KEYS:
            instructions.append(" ".join(logical.split()))
        logical = ""
    lines = [f"### `{relative_posix(tree, path)}`", ""]
    lines += [f"- `{i}`" for i in instructions] or ["- (no FROM/EXPOSE/ENV/CMD instructions)"]
    return [*lines, ""]


def compose_section(tree: Path, path: Path) -> list[str]:
    lines = [f"### `{relative_posix(tree, path)}`", ""]
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace")) or {}
    except yaml.YAMLError as exc:
        return [*lines, f"Could not parse this file: {str(exc).splitlines()[0]}", ""]
    services = document.get("services", {}) if isinstance(document, dict) else {}
    if not isinstance(services, dict) or not services:
        return [*lines, "No services defined.", ""]
    lines += ["| service | image / build | ports | environment | depends on |", "|---|---|---|---|---|"]
    for name, spec in services.items():
        spec = spec if isinstance(spec, dict) else {}
        build = spec.get("build")
        source = spec.get("image") or (build.get("context", ".") if isinstance(build, dict) else build) or ""
        environment = spec.get("environment") or {}
        env_names = (
            list(environment)
            if isinstance(environment, dict)
            else [str(e).split("=")[0] for e in environment]
        )
        depends = spec.get("depends_on") or []
        cells = [
            name,
            f"`{source}`" if source else "",
            ", ".join(f"`{p}`" for p in spec.get("ports", []) or []),
            ", ".join(f"`{e}`" for e in env_names),
            ", ".join(depends if isinstance(depends, list) else list(depends)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def makefile_targets(path: Path) -> list[tuple[str, str]]:
    """(target, description) — the description from a trailing `## ...` or the comment line above."""
    targets: list[tuple[str, str]] = []
    previous_comment = ""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _MAKE_TARGET.match(line)
        if match and not line.startswith("\t"):
            for target in match.group(1).split():
                targets.append((target, (match.group(3) or previous_comment).strip()))
        previous_comment = line.lstrip("#").strip() if line.startswith("#") else ""
    return targets


def pyproject_section(pyproject: dict[str, Any]) -> list[str]:
    project = pyproject.get("project", {})
    lines = ["## Python package", ""]
    if project.get("name"):
        lines.append(f"- Name: `{project['name']}` {project.get('version', '')}".rstrip())
    if project.get("requires-python"):
        lines.append(f"- Requires Python `{project['requires-python']}`")
    lines.append("- Install: `pip install .`")
    for extra in project.get("optional-dependencies", {}):
        lines.append(f"- Extra `{extra}`: `pip install '.[{extra}]'`")
    dependencies = project.get("dependencies", [])
    if dependencies:
        lines += ["- Dependencies: " + ", ".join(f"`{d}`" for d in dependencies)]
    for name, target in project.get("scripts", {}).items():
        lines.append(f"- Console script `{name}` -> `{target}`")
    return [*lines, ""]


def env_section(variables: list[EnvVar]) -> list[str]:
    lines = ["## Environment variables", "", "Read by the code (found in the source):", ""]
    lines += ["| variable | required | default | read at |", "|---|---|---|---|"]
    for var in variables:
        default = f"`{var.default}`" if var.default is not None else ""
        where = ", ".join(f"`{loc}`" for loc in var.locations[:5])
        lines.append(f"| `{var.name}` | {'yes' if var.required else 'no'} | {default} | {where} |")
    return [*lines, ""]


def build_deployment_guide(tree: Path, project: str) -> tuple[str, list[EnvVar], list[str]]:
    """(markdown, environment variables, source files used)."""
    sources: list[str] = []
    lines = [f"# {project} deployment guide", ""]
    pyproject = read_pyproject(tree)
    if pyproject:
        sources.append("pyproject.toml")
        lines += pyproject_section(pyproject)
    dockerfiles = _project_files(
        tree, lambda n: n == "Dockerfile" or n.startswith("Dockerfile.") or n.endswith(".Dockerfile")
    )
    composes = _project_files(tree, _COMPOSE_NAMES.match)
    if dockerfiles or composes:
        lines += ["## Containers", ""]
        for path in dockerfiles:
            sources.append(relative_posix(tree, path))
            lines += dockerfile_section(tree, path)
        for path in composes:
            sources.append(relative_posix(tree, path))
            lines += compose_section(tree, path)
    makefile = tree / "Makefile"
    if makefile.is_file():
        sources.append("Makefile")
        targets = makefile_targets(makefile)
        lines += ["## Make targets", ""]
        lines += [f"- `make {t}`" + (f": {d}" if d else "") for t, d in targets if t != ".PHONY"]
        lines.append("")
    variables = environment_variables(tree)
    if variables:
        lines += env_section(variables)
        sources += sorted({loc.rsplit(":", 1)[0] for v in variables for loc in v.locations})
    if len(lines) == 2:
        lines += [
            "No Dockerfile, compose file, pyproject.toml, Makefile or environment variables were found.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n", variables, list(dict.fromkeys(sources))
