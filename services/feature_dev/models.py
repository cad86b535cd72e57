"""Payloads, results and errors of the feature-dev agent's skills (GENERATE_CODE, REFACTOR_CODE)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ChangeKind = Literal["generate", "refactor"]
Outcome = Literal["committed", "no_change"]


class FeatureDevError(ValueError):
    """The change cannot be made as asked (not a repository, unknown ref, branch exists, the run failed)."""


class FeatureDevRejected(FeatureDevError):
    """The agent will not take the request at all (no LLM configured); the handler answers `rejected`."""


class ChangePayload(BaseModel):
    """Make a change on a new branch cut from `base_ref`; the same shape for both request types."""

    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1, description="path of a local git repository")
    base_ref: str = Field("HEAD", min_length=1, description="the ref the new branch starts from")
    instruction: str = Field(min_length=1, max_length=20_000, description="what to implement or change")
    branch: str | None = Field(
        None, min_length=1, max_length=200, description="name of the new branch; default: devtools/<kind>-..."
    )
    files: list[str] = Field(
        default_factory=list, max_length=200, description="files the change is expected to touch (a hint)"
    )
    max_iterations: int = Field(40, ge=1, le=500, description="upper bound on the agent's steps")

    @field_validator("instruction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"{path!r}: give paths relative to the repository, without '..'")
        return value


class GenerateCodePayload(ChangePayload):
    """GENERATE_CODE: implement a feature or fix described by `instruction`."""


class RefactorCodePayload(ChangePayload):
    """REFACTOR_CODE: restructure code without changing its behaviour."""


class FileChange(BaseModel):
    path: str
    status: str = Field(description="A (added), M (modified), D (deleted), R (renamed)")
    insertions: int
    deletions: int
    binary: bool = False


class ChangeResult(BaseModel):
    kind: ChangeKind
    outcome: Outcome
    repo: str
    base_ref: str
    base_commit: str
    branch: str | None = Field(description="the new branch; None when nothing changed (no branch is left)")
    commit: str | None
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    files: list[FileChange] = Field(default_factory=list)
    final_message: str = Field("", description="the agent's closing message")
    model: str = Field(description="the LLM the conversation ran with")
    actions: int = Field(0, description="tool calls the agent made (file edits, commands, finish)")
