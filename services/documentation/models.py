"""Payloads and results of the documentation agent's skills (GENERATE_DOCS, UPDATE_README)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DocType = Literal["api", "user_guide", "deployment_guide"]
SECTION_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class DocsError(ValueError):
    """The docs cannot be generated as asked (not a repository, unknown ref, missing markers...)."""


class GenerateDocsPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1, description="path of a local git repository")
    doc_type: DocType
    ref: str | None = Field(None, min_length=1, description="document this ref; default: the working tree")
    output_dir: str | None = Field(None, min_length=1, description="also write <doc_type>.md here")
    packages: list[str] | None = Field(None, description="api: only these top-level packages")
    run_scripts: bool = Field(True, description="user_guide: run console scripts with --help")
    script_timeout_seconds: float = Field(20.0, gt=0, le=300)


class FunctionDoc(BaseModel):
    name: str
    signature: str
    is_async: bool
    docstring: str | None
    line: int


class ClassDoc(BaseModel):
    name: str
    bases: list[str]
    docstring: str | None
    line: int
    methods: list[FunctionDoc]


class ModuleDoc(BaseModel):
    module: str
    path: str
    docstring: str | None
    classes: list[ClassDoc]
    functions: list[FunctionDoc]


class ScriptHelp(BaseModel):
    name: str
    entry_point: str
    help_text: str | None = Field(None, description="the real output of `<script> --help`")
    not_run_reason: str | None = Field(None, description="why the help text could not be captured")


class EnvVar(BaseModel):
    name: str
    default: str | None = Field(None, description="the default as written in the source, if any")
    required: bool = Field(description="read without a default (os.environ[...] or a required setting)")
    locations: list[str] = Field(description="file:line where the code reads it")


class GenerateDocsResult(BaseModel):
    repo: str
    doc_type: DocType
    ref: str | None
    commit: str | None = Field(description="the commit documented; None for the working tree")
    markdown: str
    output_path: str | None = None
    sources: list[str] = Field(description="repository files the document was built from")
    modules: list[ModuleDoc] | None = None
    scripts: list[ScriptHelp] | None = None
    env_vars: list[EnvVar] | None = None
    llm_prose: str | None = Field(None, description="an introduction written by the configured LLM, if any")
    llm_warning: str | None = Field(None, description="why llm_prose is missing though a model is set")


class UpdateReadmePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1)
    section: str = Field("api", pattern=SECTION_PATTERN, description="marker name: devtools:<section>:start")
    doc_type: DocType | None = Field(
        None, description="what to put in the section; default: the section name"
    )
    readme: str = Field("README.md", min_length=1, description="path relative to the repository root")
    mode: Literal["in_place", "branch"] = "in_place"
    branch: str | None = Field(None, min_length=1, description="branch mode: the new branch's name")
    base: str = Field("HEAD", min_length=1, description="branch mode: the ref the branch starts from")
    commit_message: str = Field("docs: regenerate README section", min_length=1, max_length=500)

    @model_validator(mode="after")
    def _doc_type(self) -> Self:
        if self.doc_type is None:
            if self.section not in ("api", "user_guide", "deployment_guide"):
                raise ValueError(f"doc_type: required when section {self.section!r} is not a doc type")
            self.doc_type = self.section  # type: ignore[assignment]
        return self


class UpdateReadmeResult(BaseModel):
    repo: str
    readme: str
    section: str
    mode: Literal["in_place", "branch"]
    changed: bool = Field(description="False when the section already held exactly this text")
    branch: str | None = None
    commit: str | None = None
    section_text: str
    llm_warning: str | None = Field(None, description="why the section has no LLM introduction")
