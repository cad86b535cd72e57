"""Environment variables the code reads: os.environ, os.getenv, and pydantic-settings classes."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from services.documentation.models import EnvVar
from services.documentation.sources import python_files, relative_posix


@dataclass
class _Read:
    name: str
    default: str | None
    required: bool
    location: str


def environment_variables(tree: Path) -> list[EnvVar]:
    reads: list[_Read] = []
    for path in python_files(tree):
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            module = ast.parse(source)
        except SyntaxError:
            continue
        where = relative_posix(tree, path)
        reads += _direct_reads(module, source, where)
        reads += _settings_fields(module, source, where)
    merged: dict[str, EnvVar] = {}
    for read in reads:
        var = merged.setdefault(read.name, EnvVar(name=read.name, required=False, locations=[]))
        var.required = var.required or read.required
        var.default = var.default if var.default is not None else read.default
        if read.location not in var.locations:
            var.locations.append(read.location)
    return sorted(merged.values(), key=lambda v: v.name)


def _is_environ(node: ast.AST) -> bool:
    """`os.environ` or a bare `environ` (from os import environ)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _is_getenv(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "getenv" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "getenv"


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.unparse(node)


def _direct_reads(module: ast.Module, source: str, where: str) -> list[_Read]:
    reads: list[_Read] = []
    for node in ast.walk(module):
        if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            name = _string(node.slice)
            if name:
                reads.append(_Read(name, None, True, f"{where}:{node.lineno}"))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            is_get = (
                isinstance(func, ast.Attribute)
                and func.attr in ("get", "setdefault")
                and _is_environ(func.value)
            )
            name = _string(node.args[0])
            if not name or not (is_get or _is_getenv(func)):
                continue
            default_node = node.args[1] if len(node.args) > 1 else None
            default_node = default_node or next((k.value for k in node.keywords if k.arg == "default"), None)
            default = _segment(source, default_node) if default_node is not None else None
            reads.append(_Read(name, default, False, f"{where}:{node.lineno}"))
    return reads


def _settings_fields(module: ast.Module, source: str, where: str) -> list[_Read]:
    """Fields of pydantic-settings classes: env name = env_prefix + field name (upper-cased)."""
    reads: list[_Read] = []
    constants = _module_constants(module)
    for node in ast.walk(module):
        if not isinstance(node, ast.ClassDef):
            continue
        if not any("BaseSettings" in _segment(source, base) for base in node.bases):
            continue
        prefix = _env_prefix(node, constants) or ""
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            field = statement.target.id
            if field.startswith("_") or field == "model_config":
                continue
            alias, default, required = _field_default(statement.value, source)
            name = alias or f"{prefix}{field}".upper()
            reads.append(_Read(name, default, required, f"{where}:{statement.lineno}"))
    return reads


def _module_constants(module: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "text"` assignments, so `env_prefix=ENV_PREFIX` can be resolved."""
    constants: dict[str, str] = {}
    for statement in module.body:
        if isinstance(statement, ast.Assign) and (text := _string(statement.value)) is not None:
            constants.update({t.id: text for t in statement.targets if isinstance(t, ast.Name)})
    return constants


def _text(node: ast.AST | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return _string(node)


def _env_prefix(cls: ast.ClassDef, constants: dict[str, str]) -> str | None:
    for statement in cls.body:
        # model_config = SettingsConfigDict(env_prefix="APP_") or a dict literal
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(isinstance(t, ast.Name) and t.id == "model_config" for t in targets):
                value = statement.value
                if isinstance(value, ast.Call):
                    return next(
                        (_text(k.value, constants) for k in value.keywords if k.arg == "env_prefix"), None
                    )
                if isinstance(value, ast.Dict):
                    pairs = zip(value.keys, value.values, strict=True)
                    return next(
                        (_string(v) for k, v in pairs if k is not None and _string(k) == "env_prefix"), None
                    )
        # pydantic v1 style: class Config: env_prefix = "APP_"
        if isinstance(statement, ast.ClassDef) and statement.name == "Config":
            for inner in statement.body:
                if isinstance(inner, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "env_prefix" for t in inner.targets
                ):
                    return _text(inner.value, constants)
    return None


def _field_default(value: ast.expr | None, source: str) -> tuple[str | None, str | None, bool]:
    """(alias, default as written, required) of a settings field's right-hand side."""
    if value is None:
        return None, None, True
    is_field = isinstance(value, ast.Call) and (
        (isinstance(value.func, ast.Name) and value.func.id == "Field")
        or (isinstance(value.func, ast.Attribute) and value.func.attr == "Field")
    )
    if not is_field:
        return None, _segment(source, value), False
    assert isinstance(value, ast.Call)
    keywords = {k.arg: k.value for k in value.keywords if k.arg}
    alias = _string(keywords.get("validation_alias")) or _string(keywords.get("alias"))
    default_node = value.args[0] if value.args else keywords.get("default")
    if "default_factory" in keywords:
        return alias, f"{_segment(source, keywords['default_factory'])}()", False
    if default_node is None or (isinstance(default_node, ast.Constant) and default_node.value is Ellipsis):
        return alias, None, True
    return alias, _segment(source, default_node), False
