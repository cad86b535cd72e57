"""Filling a release folder: a `git archive` export of a ref, or a stored artifact unpacked."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from services.infrastructure.contract import DeployServicePayload
from services.infrastructure.env_state import ReleaseInfo
from services.infrastructure.errors import InfrastructureError
from shared.artifacts import ArtifactNotFoundError, ArtifactStore
from shared.git import GitError, ensure_repository, resolve_ref, run_git


def new_release_id(label: str) -> str:
    """Sortable by time, unique, and telling where it came from: 20250101T120000-1a2b3c4d-9f8e."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{label[:8]}-{uuid4().hex[:4]}"


def is_release_of(info: ReleaseInfo, payload: DeployServicePayload) -> bool:
    """Whether release `info` is what `payload` asks for (same commit or artifact, no other settings)."""
    if payload.repo is not None:
        try:
            wanted = {"commit": resolve_ref(payload.repo, payload.ref)}
        except GitError:
            return False  # the export reports the bad ref
    else:
        wanted = {"artifact_sha256": str(payload.artifact_sha256)}
    if any(info.source.get(key) != value for key, value in wanted.items()):
        return False
    asked = {"run_command": payload.run_command, "port": payload.port, "health_path": payload.health_path}
    return not any(value is not None and getattr(info, key) != value for key, value in asked.items())


def export_git_ref(repo: str, ref: str, target: Path) -> dict[str, str]:
    """Write the tree of `ref` into `target`; returns the release's source description."""
    try:
        top = ensure_repository(repo)
        commit = resolve_ref(top, ref)
    except GitError as exc:
        raise InfrastructureError(str(exc)) from None
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="export-", dir=target.parent) as scratch:
        archive = Path(scratch) / "tree.tar"
        run_git(top, "archive", "--format=tar", "-o", str(archive), commit)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    return {"repo": str(top), "ref": ref, "commit": commit}


def unpack_artifact(data_dir: Path, sha256: str, target: Path) -> dict[str, str]:
    """Unpack a stored artifact (sdist, wheel, zip) into `target`; a plain file is copied as it is."""
    store = ArtifactStore(data_dir)
    try:
        manifest = store.get(sha256)
        blob = store.verify(sha256)
    except ArtifactNotFoundError as exc:
        raise InfrastructureError(str(exc)) from None
    target.mkdir(parents=True)
    name = manifest.file_name
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(blob) as tar:
            tar.extractall(target, filter="data")
        _strip_single_top_folder(target)
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(blob) as archive:
            archive.extractall(target)  # zipfile drops absolute and ".." parts of member names
    else:
        shutil.copyfile(blob, target / name)
    return {"artifact_sha256": sha256, "file_name": name, "commit": manifest.commit, "repo": manifest.repo}


def _strip_single_top_folder(target: Path) -> None:
    # An sdist wraps everything in "name-version/"; the app expects its files at the release root.
    entries = list(target.iterdir())
    if len(entries) != 1 or not entries[0].is_dir():
        return
    inner = entries[0]
    holding = target / f".unwrap-{uuid4().hex[:6]}"
    inner.rename(holding)
    for child in holding.iterdir():
        child.rename(target / child.name)
    holding.rmdir()
