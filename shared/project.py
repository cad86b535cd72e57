"""The per-repository settings the agents read: `[tool.devtools]` of `pyproject.toml`, or `devtools.toml`.

One small schema, shared by cicd (test and build) and infrastructure (run and health check):

```toml
[tool.devtools]                 # in pyproject.toml; in devtools.toml the same keys at top level
test_command = "pytest -q"      # otherwise detected: pytest, npm test, make test
build_command = "make dist"     # otherwise `python -m build` for Python projects
artifact_glob = "dist/*"        # where the build leaves its artifacts (relative to the repo)
junit_xml = "reports/junit.xml" # where a non-pytest runner writes JUnit XML (pytest's is collected anyway)
run_command = "python app.py"   # how infrastructure starts the app; the port arrives in env PORT
port = 8080                     # the port the app listens on
health_path = "/health"         # HTTP GET target of the health check
timeout_seconds = 600           # limit for the test and build commands
health_timeout_seconds = 30     # how long a fresh release has to pass its health check
max_restarts = 0                # restarts of a crashed app by its supervisor (0: a crash leaves it down)
```

`devtools.toml` wins over `pyproject.toml` when both exist (it is the more specific file).
Commands are shell command lines run from the repository's root.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PYPROJECT = "pyproject.toml"
DEVTOOLS_TOML = "devtools.toml"


class ProjectConfigError(ValueError):
    """The repository's devtools configuration is unreadable or invalid; the message names the key."""


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    test_command: str | None = Field(None, min_length=1)
    build_command: str | None = Field(None, min_length=1)
    artifact_glob: str = Field("dist/*", min_length=1)
    junit_xml: str | None = Field(None, min_length=1)
    run_command: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    health_path: str = Field("/", pattern=r"^/")
    timeout_seconds: float = Field(600, gt=0, le=6 * 3600)
    health_timeout_seconds: float = Field(30, gt=0, le=3600)
    max_restarts: int = Field(0, ge=0, le=100)
    # Where the settings came from ("devtools.toml", "pyproject.toml" or "defaults"), for answers and logs.
    source: str = "defaults"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectConfigError(f"{path.name}: not valid TOML ({exc})") from None


def _validated(table: dict[str, Any], source: str) -> ProjectConfig:
    try:
        return ProjectConfig(**table, source=source)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "?"
        message = first["msg"].removeprefix("Value error, ")
        raise ProjectConfigError(f"{source}: [tool.devtools] {key}: {message}") from None
    except TypeError as exc:  # a non-table value where a table belongs
        raise ProjectConfigError(f"{source}: {exc}") from None


def load_project_config(root: Path) -> ProjectConfig:
    """The settings of the repository checked out at `root`; defaults where it configures nothing."""
    devtools_toml = root / DEVTOOLS_TOML
    if devtools_toml.is_file():
        data = _read_toml(devtools_toml)
        # Accept both layouts: keys at top level, or under [tool.devtools] as in pyproject.
        table = data.get("tool", {}).get("devtools", data) if "tool" in data else data
        if not isinstance(table, dict):
            raise ProjectConfigError(f"{DEVTOOLS_TOML}: [tool.devtools] must be a table")
        return _validated(table, DEVTOOLS_TOML)
    pyproject = root / PYPROJECT
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("devtools")
        if table is not None:
            if not isinstance(table, dict):
                raise ProjectConfigError(f"{PYPROJECT}: [tool.devtools] must be a table")
            return _validated(table, PYPROJECT)
    return ProjectConfig()


def is_python_project(root: Path) -> bool:
    if any((root / name).is_file() for name in (PYPROJECT, "setup.py", "setup.cfg", "pytest.ini", "tox.ini")):
        return True
    # A loose collection of tests is still a Python project pytest can run; bounded so huge trees stay cheap.
    for count, path in enumerate(root.rglob("*.py")):
        if count > 5000:
            break
        if ".git" not in path.parts and (path.name.startswith("test_") or path.name.endswith("_test.py")):
            return True
    return False


def has_python_build_config(root: Path) -> bool:
    return (root / PYPROJECT).is_file() or (root / "setup.py").is_file()
