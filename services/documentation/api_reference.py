"""The API reference: public modules, classes, methods and functions of the repo's packages, from the AST."""

from __future__ import annotations

from pathlib import Path

from services.documentation.models import ClassDoc, DocsError, FunctionDoc, ModuleDoc
from services.documentation.sources import package_modules, python_packages, relative_posix
from shared.outline import ClassOutline, FunctionOutline, ModuleOutline, outline_module

# Dunder methods that are part of how a class is used, so they belong in its reference.
_PUBLIC_DUNDERS = {"__init__", "__call__"}


def is_public_name(name: str) -> bool:
    return not name.startswith("_")


def collect_modules(tree: Path, packages: list[str] | None = None) -> list[ModuleDoc]:
    """Public API of every package: underscore names are private; a module's `__all__` is authoritative."""
    found = python_packages(tree, packages)
    if not found:
        raise DocsError(f"repo: no Python packages (folders with __init__.py) found in {tree}")
    modules: list[ModuleDoc] = []
    for name, folder in found:
        for module_name, path in package_modules(name, folder):
            if not all(is_public_name(part) for part in module_name.split(".")):
                continue
            try:
                outline = outline_module(path.read_text(encoding="utf-8", errors="replace"))
            except SyntaxError as exc:
                raise DocsError(
                    f"{relative_posix(tree, path)} does not parse: line {exc.lineno}: {exc.msg}"
                ) from None
            modules.append(_module_doc(module_name, relative_posix(tree, path), outline))
    return modules


def _module_doc(module_name: str, path: str, outline: ModuleOutline) -> ModuleDoc:
    exported = set(outline.all_names) if outline.all_names is not None else None

    def public(name: str) -> bool:
        return name in exported if exported is not None else is_public_name(name)

    return ModuleDoc(
        module=module_name,
        path=path,
        docstring=outline.docstring,
        classes=[_class_doc(c) for c in outline.classes if public(c.name)],
        functions=[_function_doc(f) for f in outline.functions if public(f.name)],
    )


def _class_doc(cls: ClassOutline) -> ClassDoc:
    methods = [m for m in cls.methods if is_public_name(m.name) or m.name in _PUBLIC_DUNDERS]
    return ClassDoc(
        name=cls.name,
        bases=cls.bases,
        docstring=cls.docstring,
        line=cls.start_line,
        methods=[_function_doc(m) for m in methods],
    )


def _function_doc(function: FunctionOutline) -> FunctionDoc:
    return FunctionDoc(
        name=function.name,
        signature=function.signature,
        is_async=function.is_async,
        docstring=function.docstring,
        line=function.start_line,
    )


def render_api(project: str, modules: list[ModuleDoc]) -> str:
    lines = [f"# {project} API reference", ""]
    lines += [
        f"- [`{m.module}`](#{_anchor(m.module)})" for m in modules if m.classes or m.functions or m.docstring
    ]
    for module in modules:
        if not (module.classes or module.functions or module.docstring):
            continue
        lines += ["", f"## `{module.module}`", "", f"Source: `{module.path}`", ""]
        if module.docstring:
            lines += [module.docstring, ""]
        for function in module.functions:
            lines += _render_function(function, "###")
        for cls in module.classes:
            bases = f"({', '.join(cls.bases)})" if cls.bases else ""
            lines += [f"### class `{cls.name}{bases}`", ""]
            if cls.docstring:
                lines += [cls.docstring, ""]
            for method in cls.methods:
                lines += _render_function(method, "####", owner=cls.name)
    return "\n".join(lines).rstrip() + "\n"


def _render_function(function: FunctionDoc, heading: str, *, owner: str | None = None) -> list[str]:
    prefix = "async def" if function.is_async else "def"
    title = f"{owner}.{function.name}" if owner else function.name
    lines = [f"{heading} `{title}`", "", "```python", f"{prefix} {function.signature}", "```", ""]
    if function.docstring:
        lines += [function.docstring, ""]
    return lines


def _anchor(module: str) -> str:
    return module.replace(".", "").lower()
