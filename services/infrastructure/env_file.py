"""The per-environment env file `config.env`: KEY=value lines, validated, the previous version kept.

Values are stored verbatim after the first `=` (no quoting, no expansion) so what the app
reads is exactly what was set; that is why newlines and NUL are refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from services.infrastructure.errors import ConfigValidationError

KEY_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Set by the supervisor itself; a config value would be silently overridden, so it is refused instead.
RESERVED_KEYS = frozenset({"PORT"})


def validate_entry(key: str, value: str) -> None:
    if not KEY_PATTERN.match(key):
        raise ConfigValidationError(f"config key {key!r} must match [A-Z_][A-Z0-9_]*")
    if key in RESERVED_KEYS:
        raise ConfigValidationError(f"config key {key!r} is reserved (set from the release's port)")
    if any(ch in value for ch in "\r\n\x00"):
        raise ConfigValidationError(f"config value of {key} must not contain newlines or NUL")


def parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigValidationError(f"config.env line {number}: expected KEY=value")
        validate_entry(key.strip(), value)
        values[key.strip()] = value
    return values


def render(values: dict[str, str]) -> str:
    return "".join(f"{key}={values[key]}\n" for key in sorted(values))


def read(path: Path) -> dict[str, str]:
    return parse(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_keeping_previous(path: Path, values: dict[str, str]) -> None:
    """Write atomically; the file it replaces becomes `<name>.previous`."""
    for key, value in values.items():
        validate_entry(key, value)
    previous = path.with_name(path.name + ".previous")
    if path.is_file():
        os.replace(path, previous)
    else:
        previous.unlink(missing_ok=True)  # "previous" of nothing: reverting means no file
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render(values), encoding="utf-8")
    os.replace(partial, path)


def revert(path: Path) -> dict[str, str]:
    """Swap back to the previous file; returns the values now in force."""
    restored = read(path.with_name(path.name + ".previous"))
    write_keeping_previous(path, restored)  # the reverted-from values become the new "previous"
    return restored
