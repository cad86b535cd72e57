"""The structure of a Python module from its AST: classes, functions with their signatures as written.

Used by EXPLAIN_CODE and by the documentation agent's API reference. Signatures are
taken from the source text itself (comments dropped, line breaks folded), so defaults
and annotations read exactly as the author wrote them.
"""

from __future__ import annotations

import ast
import io
import tokenize

from pydantic import BaseModel, Field

from shared.complexity import cyclomatic_complexity

_OPENERS = {"(", "[", "{"}
_CLOSERS = {")", "]", "}"}
_SKIPPED_TOKENS = {
    tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER,
}  # fmt: skip


class FunctionOutline(BaseModel):
    name: str
    qualname: str
    signature: str = Field(description="name(params) -> returns, as written in the source")
    is_async: bool = False
    decorators: list[str] = Field(default_factory=list)
    docstring: str | None = None
    start_line: int
    end_line: int
    complexity: int


class ClassOutline(BaseModel):
    name: str
    qualname: str
    bases: list[str] = Field(default_factory=list)
    decorators: list[str] = Field(default_factory=list)
    docstring: str | None = None
    start_line: int
    end_line: int
    methods: list[FunctionOutline] = Field(default_factory=list)
    classes: list[ClassOutline] = Field(default_factory=list)


class ImportOutline(BaseModel):
    statement: str
    line: int


class ModuleOutline(BaseModel):
    docstring: str | None = None
    imports: list[ImportOutline] = Field(default_factory=list)
    classes: list[ClassOutline] = Field(default_factory=list)
    functions: list[FunctionOutline] = Field(default_factory=list)
    all_names: list[str] | None = Field(None, description="the literal __all__, when the module defines one")
    line_count: int = 0


def outline_module(source: str) -> ModuleOutline:
    """Outline of a module; raises SyntaxError when the source does not parse."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    outline = ModuleOutline(docstring=ast.get_docstring(tree), line_count=len(lines))
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            segment = ast.get_source_segment(source, node) or ast.unparse(node)
            outline.imports.append(ImportOutline(statement=" ".join(segment.split()), line=node.lineno))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            outline.functions.append(_function(node, source, lines, prefix=""))
        elif isinstance(node, ast.ClassDef):
            outline.classes.append(_class(node, source, lines, prefix=""))
        elif _assigns_all(node):
            outline.all_names = _literal_names(node)
    return outline


def find_symbol(outline: ModuleOutline, symbol: str) -> FunctionOutline | ClassOutline | None:
    """A class, function or method by its qualified name (`Class.method`, `Outer.Inner`, `func`)."""
    candidates: list[FunctionOutline | ClassOutline] = [*outline.functions]
    pending = list(outline.classes)
    while pending:
        cls = pending.pop()
        candidates.append(cls)
        candidates.extend(cls.methods)
        pending.extend(cls.classes)
    return next((c for c in candidates if c.qualname == symbol), None)


def function_signature(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str:
    """`name(params) -> returns` from the def's own text: comments dropped, line breaks folded."""
    header = _header_text(node, lines)
    tokens = [
        t for t in tokenize.generate_tokens(io.StringIO(header).readline) if t.type not in _SKIPPED_TOKENS
    ]
    # tokens: [async] def NAME ( ... ) [-> ...] :
    start = next(i for i, t in enumerate(tokens) if t.string == "(")
    end = len(tokens) - 1
    while tokens[end].string != ":":
        end -= 1
    return node.name + _join(tokens[start:end])


def _header_text(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str:
    """Source text from `def` (or `async`) to the start of the body."""
    first = node.body[0]
    body_line, body_col = first.lineno, first.col_offset
    text_lines = lines[node.lineno - 1 : body_line]
    if not text_lines:
        return ""
    if len(text_lines) == 1:
        return text_lines[0][node.col_offset : body_col]
    text_lines[0] = text_lines[0][node.col_offset :]
    text_lines[-1] = text_lines[-1][:body_col]
    return "".join(text_lines)


def _join(tokens: list[tokenize.TokenInfo]) -> str:
    """Rebuild text from tokens: spacing as written within a line, one space (or none) across lines."""
    parts: list[str] = []
    for index, token in enumerate(tokens):
        if index:
            previous = tokens[index - 1]
            same_line = previous.end[0] == token.start[0]
            if token.string in _CLOSERS and previous.string == "," and not same_line:
                parts.pop()  # a trailing comma before a closer on its own line is layout, not signature
            elif same_line:
                parts.append(" " * (token.start[1] - previous.end[1]))
            elif previous.string not in _OPENERS and token.string not in _CLOSERS:
                parts.append(" ")
        parts.append(token.string)
    return "".join(parts)


def _function(
    node: ast.FunctionDef | ast.AsyncFunctionDef, source: str, lines: list[str], *, prefix: str
) -> FunctionOutline:
    return FunctionOutline(
        name=node.name,
        qualname=f"{prefix}{node.name}",
        signature=function_signature(node, lines),
        is_async=isinstance(node, ast.AsyncFunctionDef),
        decorators=[_segment(source, d) for d in node.decorator_list],
        docstring=ast.get_docstring(node),
        start_line=min([node.lineno, *(d.lineno for d in node.decorator_list)]),
        end_line=node.end_lineno or node.lineno,
        complexity=cyclomatic_complexity(node),
    )


def _class(node: ast.ClassDef, source: str, lines: list[str], *, prefix: str) -> ClassOutline:
    qualname = f"{prefix}{node.name}"
    outline = ClassOutline(
        name=node.name,
        qualname=qualname,
        bases=[_segment(source, b) for b in [*node.bases, *node.keywords]],
        decorators=[_segment(source, d) for d in node.decorator_list],
        docstring=ast.get_docstring(node),
        start_line=min([node.lineno, *(d.lineno for d in node.decorator_list)]),
        end_line=node.end_lineno or node.lineno,
    )
    for child in node.body:
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            outline.methods.append(_function(child, source, lines, prefix=f"{qualname}."))
        elif isinstance(child, ast.ClassDef):
            outline.classes.append(_class(child, source, lines, prefix=f"{qualname}."))
    return outline


def _segment(source: str, node: ast.AST) -> str:
    return " ".join((ast.get_source_segment(source, node) or ast.unparse(node)).split())


def _assigns_all(node: ast.stmt) -> bool:
    targets = (
        node.targets
        if isinstance(node, ast.Assign)
        else [node.target]
        if isinstance(node, ast.AnnAssign)
        else []
    )
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _literal_names(node: ast.stmt) -> list[str] | None:
    value = getattr(node, "value", None)
    if isinstance(value, ast.List | ast.Tuple):
        names = [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return names if len(names) == len(value.elts) else None
    return None
