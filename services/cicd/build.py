"""VALIDATE_BUILD: build the repository at a ref in a throwaway worktree and store what it produced.

The build command is the configured one, or `python -m build` for Python projects. That
build runs without isolation when every build requirement is already installed in the
interpreter (no network needed, and seconds instead of a fresh virtualenv per build);
otherwise it builds isolated, which needs a package index.
"""

from __future__ import annotations

import logging
import shlex
import sys
import tomllib
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field

from services.cicd.errors import CicdError, NoBuildCommandError
from services.cicd.metrics import ARTIFACTS_STORED, BUILDS
from services.cicd.pipeline import REF_PATTERN
from shared.artifacts import ArtifactStore, StoredArtifact
from shared.diagnosis import diagnose
from shared.git import GitError, ensure_repository, resolve_ref, run_git, worktree
from shared.llm import Prose
from shared.process import clean_environment, interpreter_for, log_tail, run_command
from shared.project import ProjectConfig, has_python_build_config, load_project_config

log = logging.getLogger(__name__)

DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0"]  # PEP 517's fallback when [build-system] is absent


class ValidateBuildPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1, description="path of the git repository")
    ref: str = Field("HEAD", min_length=1, max_length=255, pattern=REF_PATTERN)
    build_command: str | None = Field(None, min_length=1, description="overrides the configured/default one")
    timeout_seconds: float | None = Field(None, gt=0, le=6 * 3600)


class BuildResult(BaseModel):
    build_id: str
    status: Literal["succeeded", "failed", "timed_out"]
    message: str
    repo: str
    ref: str
    commit: str
    command: str
    command_source: str  # payload | devtools.toml | pyproject.toml | default:python-build
    exit_code: int | None
    duration_seconds: float
    artifacts: list[StoredArtifact]
    log_tail: str
    log_path: str
    diagnosis: str | None = None  # LLM prose, only when a model is configured and the build failed
    llm_warning: str | None = None  # why `diagnosis` is missing although a model is configured


def _build_requirements_installed(root: Path) -> bool:
    """Whether our interpreter already has every [build-system] requirement (so no isolation is needed)."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        requires = data.get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)
    except (FileNotFoundError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        requires = DEFAULT_BUILD_REQUIRES
    for text in requires:
        try:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            installed = version(requirement.name)
        except (InvalidRequirement, PackageNotFoundError):
            return False
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def _produced_files(root: Path, artifact_glob: str) -> list[Path]:
    inside = root.resolve()
    try:
        matches = sorted(p for p in root.glob(artifact_glob) if p.is_file())
    except ValueError as exc:  # absolute or otherwise unusable pattern
        raise CicdError(f"artifact_glob {artifact_glob!r}: {exc}") from None
    # A glob reaching outside the checkout ("../*") must not copy arbitrary files into the store.
    return [p for p in matches if p.resolve().is_relative_to(inside)]


def resolve_build_command(
    root: Path, config: ProjectConfig, override: str | None, repo: Path | None = None
) -> tuple[str, str, str]:
    """(command, where it came from, artifact glob)."""
    if override:
        return override, "payload", config.artifact_glob
    if config.build_command:
        return config.build_command, config.source, config.artifact_glob
    if has_python_build_config(root):
        python = interpreter_for(root, repo)
        offline = python == sys.executable and _build_requirements_installed(root)
        flags = "--no-isolation " if offline else ""
        return f"{shlex.quote(python)} -m build {flags}--outdir dist", "default:python-build", "dist/*"
    raise NoBuildCommandError(
        "no build command: set build_command under [tool.devtools] in pyproject.toml or in devtools.toml "
        "(the repository has no pyproject.toml or setup.py for `python -m build`)"
    )


def validate_build(
    payload: ValidateBuildPayload, *, data_dir: Path, chat_model: BaseChatModel | None = None
) -> BuildResult:
    try:
        repo = ensure_repository(payload.repo)
        commit = resolve_ref(repo, payload.ref)
    except GitError as exc:
        raise CicdError(str(exc)) from None
    build_id = uuid.uuid4().hex[:12]
    log_path = data_dir / "builds" / build_id / "log.txt"
    store = ArtifactStore(data_dir)
    artifacts: list[StoredArtifact] = []
    # The commit's own time as the build time: reproducible builds then give identical bytes.
    epoch = run_git(repo, "log", "-1", "--format=%ct", commit).strip()
    with worktree(repo, commit, data_dir / "worktrees" / "cicd") as root:
        config = load_project_config(root)
        command, source, artifact_glob = resolve_build_command(root, config, payload.build_command, repo)
        timeout = payload.timeout_seconds or config.timeout_seconds
        env = clean_environment(root, {"SOURCE_DATE_EPOCH": epoch}, repo=repo)
        log.info("build started", extra={"build_id": build_id, "commit": commit, "command": command})
        outcome = run_command(command, cwd=root, log_path=log_path, timeout=timeout, env=env)
        if outcome.exit_code == 0:
            for produced in _produced_files(root, artifact_glob):
                stored = store.store(produced, repo=str(repo), ref=payload.ref, commit=commit)
                ARTIFACTS_STORED.labels(outcome="new" if stored.newly_stored else "deduplicated").inc()
                artifacts.append(stored)
    tail = log_tail(log_path)
    status: Literal["succeeded", "failed", "timed_out"]
    if outcome.timed_out:
        status, message = "timed_out", f"build killed after {timeout:g}s"
    elif outcome.exit_code != 0:
        status, message = "failed", f"build command exited with {outcome.exit_code}"
    elif not artifacts:
        status, message = "failed", f"build succeeded but produced no files matching {artifact_glob!r}"
    else:
        status, message = "succeeded", f"{len(artifacts)} artifact(s) stored"
    BUILDS.labels(status=status).inc()
    log.info("build finished", extra={"build_id": build_id, "status": status, "artifacts": len(artifacts)})
    diagnosis = Prose()
    if status != "succeeded":
        diagnosis = diagnose(chat_model, f"Build `{command}`: {message}.", tail)
    return BuildResult(
        build_id=build_id,
        status=status,
        message=message,
        repo=str(repo),
        ref=payload.ref,
        commit=commit,
        command=command,
        command_source=source,
        exit_code=outcome.exit_code,
        duration_seconds=round(outcome.duration_seconds, 3),
        artifacts=artifacts,
        log_tail=tail,
        log_path=str(log_path),
        diagnosis=diagnosis.text,
        llm_warning=diagnosis.warning,
    )
