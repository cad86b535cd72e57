"""Reading the platform's YAML spec files (phase files, pattern files) and naming a place in one.

One reader so every spec file refuses a duplicate key (PyYAML would keep the last silently) and
reports unreadable files and YAML errors the same way; the caller turns a SpecFileError into its own
error (PhaseFileError, PatternError) with the file's name. The annotation helpers serve the callers'
rendering of a pydantic error location as the file's key path (`phases[2].tasks[1].depends_on`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

REPO_ROOT = Path(__file__).resolve().parents[1]


class SpecFileError(Exception):
    """A spec file cannot be read as a mapping: `key` is where (`(file)`, `(line 3, column 5)`,
    `name (line 7)`, `(top level)`) and `reason` why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a spec file refuses them instead."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SpecFileError(f"{key} (line {key_node.start_mark.line + 1})", "duplicate key")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_mapping(path: Path, expected: str) -> dict[Any, Any]:
    """The YAML mapping in `path`; SpecFileError when it cannot be read, is not valid YAML, repeats a
    key, or is not a mapping (`expected` says what it must hold, e.g. "at least `phases:`")."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except OSError as exc:
        raise SpecFileError("(file)", f"cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"(line {mark.line + 1}, column {mark.column + 1})" if mark else "(yaml)"
        raise SpecFileError(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise SpecFileError("(top level)", f"must be a mapping with {expected}")
    return data


def display_path(path: Path) -> str:
    """A path as an error shows it: relative to the checkout when it is inside, else as given."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def key_path(loc: Sequence[int | str]) -> str:
    """A location as written in the file: `phases[2].tasks[1]`; the empty location is the top level."""
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text or "(top level)"


def unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] -> X and X | None -> X; a union of several types stays a union."""
    while get_origin(annotation) is Annotated or (
        get_origin(annotation) in (Union, UnionType)
        and NoneType in get_args(annotation)
        and len(get_args(annotation)) == 2
    ):
        annotation = next(a for a in get_args(annotation) if a is not NoneType)
    return annotation


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
