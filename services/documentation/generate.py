"""GENERATE_DOCS: build one kind of document from a repository and optionally write it to a folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from prometheus_client import Counter, Histogram

from services.documentation.api_reference import collect_modules, render_api
from services.documentation.deployment_guide import build_deployment_guide
from services.documentation.models import (
    DocsError,
    DocType,
    EnvVar,
    GenerateDocsPayload,
    GenerateDocsResult,
    ModuleDoc,
    ScriptHelp,
)
from services.documentation.sources import checkout, open_repository, read_pyproject
from services.documentation.user_guide import build_user_guide
from shared.llm import Prose, optional_prose

log = logging.getLogger(__name__)

DOCS_GENERATED = Counter("devtools_docs_generated_total", "Documents generated", ["doc_type"])
DOCS_DURATION = Histogram("devtools_docs_generation_seconds", "Time to generate one document", ["doc_type"])
PROSE_INSTRUCTIONS = (
    "You write technical documentation. Given a generated {doc_type} document, write a short introduction "
    "(one or two paragraphs of Markdown, no headings) for a reader new to the project. State only what the "
    "document supports."
)


@dataclass
class Document:
    markdown: str
    sources: list[str]
    modules: list[ModuleDoc] | None = None
    scripts: list[ScriptHelp] | None = None
    env_vars: list[EnvVar] | None = field(default=None)


def project_name(tree: Path, repo: Path) -> str:
    return str(read_pyproject(tree).get("project", {}).get("name") or repo.name)


def build_document(
    tree: Path,
    repo: Path,
    doc_type: DocType,
    *,
    packages: list[str] | None = None,
    run_scripts: bool = True,
    script_timeout: float = 20.0,
) -> Document:
    project = project_name(tree, repo)
    if doc_type == "api":
        modules = collect_modules(tree, packages)
        return Document(render_api(project, modules), sorted({m.path for m in modules}), modules=modules)
    if doc_type == "user_guide":
        markdown, scripts, sources = build_user_guide(
            tree, project, run_scripts=run_scripts, timeout=script_timeout, repo=repo
        )
        return Document(markdown, sources, scripts=scripts)
    if doc_type == "deployment_guide":
        markdown, variables, sources = build_deployment_guide(tree, project)
        return Document(markdown, sources, env_vars=variables)
    raise DocsError(f"doc_type: unknown document type {doc_type!r}")  # the payload model already refuses it


def add_prose(document: Document, doc_type: DocType, chat_model: BaseChatModel | None) -> Prose:
    """Ask the model for an introduction and put it under the document's title; a model that fails
    leaves the document as generated (the Prose's warning says why)."""
    instructions = PROSE_INSTRUCTIONS.format(doc_type=doc_type.replace("_", " "))
    prose = optional_prose(chat_model, instructions, document.markdown)
    if prose.text is not None:
        title, _, rest = document.markdown.partition("\n")
        document.markdown = f"{title}\n\n{prose.text}\n{rest}"
    return prose


def generate_docs(
    payload: GenerateDocsPayload, *, chat_model: BaseChatModel | None = None
) -> GenerateDocsResult:
    started = time.monotonic()
    repo = open_repository(payload.repo)
    with checkout(repo, payload.ref) as (tree, commit):
        document = build_document(
            tree,
            repo,
            payload.doc_type,
            packages=payload.packages,
            run_scripts=payload.run_scripts,
            script_timeout=payload.script_timeout_seconds,
        )
    prose = add_prose(document, payload.doc_type, chat_model)
    output_path = None
    if payload.output_dir is not None:
        output_path = write_output(repo, payload.output_dir, payload.doc_type, document.markdown)
    DOCS_GENERATED.labels(payload.doc_type).inc()
    DOCS_DURATION.labels(payload.doc_type).observe(time.monotonic() - started)
    log.info("docs generated", extra={"repo": str(repo), "doc_type": payload.doc_type, "output": output_path})
    return GenerateDocsResult(
        repo=str(repo),
        doc_type=payload.doc_type,
        ref=payload.ref,
        commit=commit,
        markdown=document.markdown,
        output_path=output_path,
        sources=document.sources,
        modules=document.modules,
        scripts=document.scripts,
        env_vars=document.env_vars,
        llm_prose=prose.text,
        llm_warning=prose.warning,
    )


def write_output(repo: Path, output_dir: str, doc_type: DocType, markdown: str) -> str:
    """Write `<doc_type>.md`; a relative folder is taken relative to the repository root."""
    folder = Path(output_dir) if Path(output_dir).is_absolute() else repo / output_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{doc_type}.md"
        target.write_text(markdown, encoding="utf-8")
    except OSError as exc:
        raise DocsError(f"output_dir: cannot write to {folder}: {exc.strerror}") from None
    return str(target)
