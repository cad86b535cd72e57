"""Payloads and results of the code-review agent's skills (REVIEW_CODE, EXPLAIN_CODE)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.outline import ClassOutline, FunctionOutline, ModuleOutline

Severity = Literal["error", "warning", "info"]
Verdict = Literal["approve", "comment", "request_changes"]
FindingCategory = Literal["lint", "complexity", "secret", "file", "tests"]


class ReviewError(ValueError):
    """The review cannot be done as asked (not a repository, unknown ref, a diff that does not apply)."""


class ReviewCodePayload(BaseModel):
    """Review what `head` changes on top of `base`, or what a unified `diff` changes on top of `base`."""

    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1, description="path of a local git repository")
    base: str = Field("HEAD", min_length=1, description="the ref the change is compared against")
    head: str | None = Field(None, min_length=1, description="the ref with the change; or give `diff`")
    diff: str | None = Field(None, min_length=1, description="a unified diff applied on top of `base`")
    complexity_threshold: int = Field(10, ge=1, le=1000)
    max_file_bytes: int = Field(1_000_000, ge=1)
    lint: bool = True
    ruff_select: list[str] | None = Field(
        None, description="ruff rule selection; default: the repository's own ruff configuration"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.head is None) == (self.diff is None):
            raise ValueError("give exactly one of `head` (a ref) or `diff` (unified diff text)")
        return self


class Finding(BaseModel):
    file: str
    line: int | None = Field(None, description="line in the new version; None for whole-file findings")
    rule: str
    severity: Severity
    category: FindingCategory
    message: str


class VerdictDecision(BaseModel):
    verdict: Verdict
    rule: str = Field(description="the policy rule that decided the verdict")
    reason: str


class ReviewStats(BaseModel):
    files_changed: int
    lines_added: int
    lines_deleted: int
    python_files_linted: int
    # The highest cyclomatic complexity among the changed Python functions, whatever the threshold
    # (None: no Python function was touched), and where it is: what a gate's complexity criterion reads.
    max_complexity: int | None = None
    max_complexity_function: str | None = None
    max_complexity_at: str | None = None


class ReviewResult(BaseModel):
    repo: str
    base_commit: str
    head_commit: str
    verdict: Verdict
    decided_by: VerdictDecision
    findings: list[Finding]
    stats: ReviewStats
    summary: str = Field(description="deterministic one-paragraph summary")
    llm_summary: str | None = Field(None, description="reviewer prose from the configured LLM, if any")
    llm_warning: str | None = Field(None, description="why llm_summary is missing although a model is set")


class ExplainCodePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1)
    path: str = Field(min_length=1, description="a Python file, relative to the repository root")
    ref: str | None = Field(None, min_length=1, description="a ref to read; default: the working tree")
    symbol: str | None = Field(None, min_length=1, description="e.g. `func`, `Class`, `Class.method`")


class ExplainCodeResult(BaseModel):
    repo: str
    path: str
    ref: str | None
    symbol: str | None
    module: ModuleOutline | None = Field(None, description="the whole file, when no symbol was asked for")
    function: FunctionOutline | None = None
    cls: ClassOutline | None = Field(None, alias="class", serialization_alias="class")
    source: str | None = Field(None, description="the symbol's source text")
    explanation: str = Field(description="deterministic prose from the structure")
    llm_explanation: str | None = None
    llm_warning: str | None = Field(None, description="why llm_explanation is missing though a model is set")

    model_config = ConfigDict(populate_by_name=True)
