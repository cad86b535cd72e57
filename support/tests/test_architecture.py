"""The layout's promises, checked like any behaviour: the import contracts hold and every package's
public names import from the package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "shared.bus",
    "shared.locks",
    "shared.agents",
    "agent_orchestrator.stack",
    "agent_orchestrator.cli",
    "agent_orchestrator.tickets",
    "agent_orchestrator.tasks",
    "agent_orchestrator.coordination",
]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_import_from_the_package(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert exported, f"{package} exports nothing"
    missing = [name for name in exported if getattr(module, name, None) is None]
    assert missing == [], f"{package}.__all__ names what it does not define: {missing}"


def test_no_flat_lib_folder_is_left() -> None:
    assert not (REPO_ROOT / "shared" / "lib").exists()
    assert not (REPO_ROOT / "shared" / "langgraph").exists()
