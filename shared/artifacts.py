"""Content-addressed artifact store under the data dir: `artifacts/sha256/<hex>` plus `<hex>.json`.

The blob's name is the sha256 of its bytes, so identical content is stored once however
often it is built. The manifest records where the bytes first came from (repo, ref, commit,
file name); later builds of the same bytes only add themselves to its `builds` list.
cicd's VALIDATE_BUILD writes it; cicd's DEPLOY_ARTIFACT and infrastructure's artifact deploys read it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

_HEX = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class ArtifactNotFoundError(ValueError):
    """No stored artifact has the given sha256."""


class ArtifactBuild(BaseModel):
    repo: str
    ref: str
    commit: str
    created: str


class ArtifactManifest(BaseModel):
    sha256: str
    file_name: str
    size: int
    repo: str
    ref: str
    commit: str
    created: str
    builds: list[ArtifactBuild] = []


class StoredArtifact(BaseModel):
    sha256: str
    file_name: str
    size: int
    path: str
    manifest_path: str
    newly_stored: bool  # False when identical bytes were already in the store


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ArtifactStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "artifacts" / "sha256"

    def blob_path(self, sha256: str) -> Path:
        return self.root / sha256

    def manifest_path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def store(self, source: Path, *, repo: str, ref: str, commit: str) -> StoredArtifact:
        digest = sha256_of(source)
        blob, manifest_file = self.blob_path(digest), self.manifest_path(digest)
        build = ArtifactBuild(repo=repo, ref=ref, commit=commit, created=_now())
        with self._locked():
            newly_stored = not blob.exists()
            if newly_stored:
                # Copy to a temporary name first so a crash never leaves a truncated blob under its hash.
                partial = self.root / f".{digest}.partial"
                shutil.copyfile(source, partial)
                os.replace(partial, blob)
                manifest = ArtifactManifest(
                    sha256=digest,
                    file_name=source.name,
                    size=blob.stat().st_size,
                    repo=repo,
                    ref=ref,
                    commit=commit,
                    created=build.created,
                    builds=[build],
                )
            else:
                manifest = ArtifactManifest.model_validate_json(manifest_file.read_text())
                manifest.builds.append(build)
            partial_manifest = self.root / f".{digest}.json.partial"
            partial_manifest.write_text(manifest.model_dump_json(indent=2))
            os.replace(partial_manifest, manifest_file)
        return StoredArtifact(
            sha256=digest,
            file_name=manifest.file_name,
            size=manifest.size,
            path=str(blob),
            manifest_path=str(manifest_file),
            newly_stored=newly_stored,
        )

    def get(self, sha256: str) -> ArtifactManifest:
        """The manifest of a stored artifact; ArtifactNotFoundError (naming the hash) if there is none."""
        if not _HEX.match(sha256):
            raise ArtifactNotFoundError(f"artifact_sha256 must be 64 lowercase hex digits, got {sha256!r}")
        manifest_file = self.manifest_path(sha256)
        if not manifest_file.is_file() or not self.blob_path(sha256).is_file():
            raise ArtifactNotFoundError(f"no artifact with sha256 {sha256} in {self.root}")
        return ArtifactManifest.model_validate(json.loads(manifest_file.read_text()))

    def verify(self, sha256: str) -> Path:
        """The blob's path after checking its bytes still hash to its name."""
        self.get(sha256)
        blob = self.blob_path(sha256)
        if sha256_of(blob) != sha256:
            raise ArtifactNotFoundError(
                f"artifact {sha256} is corrupt: its content no longer matches its hash"
            )
        return blob
