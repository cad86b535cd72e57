"""EXPLAIN_CODE: the structure of a Python file, or of one symbol in it, from its AST."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from langchain_core.language_models import BaseChatModel

from services.code_review.models import ExplainCodePayload, ExplainCodeResult, ReviewError
from services.code_review.review import open_repository, resolve
from shared.git import file_at
from shared.llm import optional_prose
from shared.outline import (
    ClassOutline,
    FunctionOutline,
    ModuleOutline,
    find_symbol,
    outline_module,
)

EXPLAIN_INSTRUCTIONS = (
    "Explain this Python code to a developer new to the codebase: its purpose, how it works, "
    "and anything surprising. Use the structure given; be concise."
)


def explain_code(
    payload: ExplainCodePayload, *, chat_model: BaseChatModel | None = None
) -> ExplainCodeResult:
    repo = open_repository(payload.repo)
    source = _read_source(repo, payload)
    try:
        module = outline_module(source)
    except SyntaxError as exc:
        raise ReviewError(
            f"path: {payload.path} does not parse as Python: line {exc.lineno}: {exc.msg}"
        ) from None
    result = ExplainCodeResult(
        repo=str(repo), path=payload.path, ref=payload.ref, symbol=payload.symbol, explanation=""
    )
    if payload.symbol is None:
        result.module = module
        result.explanation = _explain_module(payload.path, module)
    else:
        found = find_symbol(module, payload.symbol)
        if found is None:
            raise ReviewError(f"symbol: {payload.symbol!r} is not defined in {payload.path}")
        lines = source.splitlines(keepends=True)
        result.source = "".join(lines[found.start_line - 1 : found.end_line])
        if isinstance(found, FunctionOutline):
            result.function = found
            result.explanation = _explain_function(found)
        else:
            result.cls = found
            result.explanation = _explain_class(found)
    if chat_model is not None:
        material = result.model_dump_json(by_alias=True, exclude={"llm_explanation", "llm_warning"}, indent=1)
        prose = optional_prose(chat_model, EXPLAIN_INSTRUCTIONS, material + "\n\nSource:\n" + source)
        result.llm_explanation, result.llm_warning = prose.text, prose.warning
    return result


def _read_source(repo: Path, payload: ExplainCodePayload) -> str:
    relative = PurePosixPath(payload.path)
    if relative.is_absolute() or ".." in relative.parts:
        raise ReviewError(f"path: must be relative to the repository and stay inside it: {payload.path}")
    if not payload.path.endswith((".py", ".pyi")):
        raise ReviewError(f"path: not a Python file: {payload.path}")
    if payload.ref is not None:
        commit = resolve(repo, payload.ref, "ref")
        text = file_at(repo, commit, relative.as_posix())
        if text is None:
            raise ReviewError(f"path: {payload.path} does not exist at {payload.ref}")
        return text
    target = repo / relative
    if not target.is_file():
        raise ReviewError(f"path: {payload.path} does not exist in the working tree of {repo}")
    return target.read_text(encoding="utf-8", errors="replace")


def _explain_function(function: FunctionOutline) -> str:
    kind = "async function" if function.is_async else "function"
    if "." in function.qualname:
        kind = "async method" if function.is_async else "method"
    text = (
        f"`{function.qualname}` is a {kind} `{function.signature}` on lines "
        f"{function.start_line}-{function.end_line}, cyclomatic complexity {function.complexity}."
    )
    if function.decorators:
        text += " Decorated with " + ", ".join(f"`@{d}`" for d in function.decorators) + "."
    if function.docstring:
        text += f" Its docstring says: {function.docstring.splitlines()[0]}"
    return text


def _explain_class(cls: ClassOutline) -> str:
    bases = f" deriving from {', '.join(f'`{b}`' for b in cls.bases)}" if cls.bases else ""
    text = f"`{cls.qualname}` is a class{bases} on lines {cls.start_line}-{cls.end_line}"
    text += f" with {len(cls.methods)} method(s)"
    if cls.methods:
        text += ": " + ", ".join(f"`{m.signature}`" for m in cls.methods)
    text += "."
    if cls.docstring:
        text += f" Its docstring says: {cls.docstring.splitlines()[0]}"
    return text


def _explain_module(path: str, module: ModuleOutline) -> str:
    text = (
        f"`{path}` has {module.line_count} lines, {len(module.imports)} import statement(s), "
        f"{len(module.classes)} class(es) and {len(module.functions)} top-level function(s)."
    )
    if module.docstring:
        text += f" Module docstring: {module.docstring.splitlines()[0]}"
    complex_functions = sorted(
        [*module.functions, *(m for c in module.classes for m in c.methods)], key=lambda f: -f.complexity
    )
    if complex_functions:
        top = complex_functions[0]
        text += f" Most complex: `{top.qualname}` ({top.complexity})."
    return text
