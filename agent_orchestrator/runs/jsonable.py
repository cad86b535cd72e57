"""Graph values -> JSON for run rows and events (state may hold pydantic models, sets, dates...)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

PREVIEW_CHARS = 2000


def jsonable(value: Any) -> Any:
    """A JSON-compatible copy: models dumped, tuples/sets listed, anything else as its string."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "_asdict"):
        return jsonable(value._asdict())
    return str(value)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> Any:
    """The value for an event: itself when small, else a truncated JSON string."""
    data = jsonable(value)
    text = json.dumps(data, default=str)
    return data if len(text) <= limit else text[:limit] + "..."
