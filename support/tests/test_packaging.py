"""The built wheel works without a checkout: installed into a fresh virtual environment, its `devtools`
migrates an empty database and `devtools doctor` reports every migration applied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.migrations import MIGRATIONS_DIR

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    bootstrapped = REPO_ROOT / ".tools" / "bin" / "uv"
    found = str(bootstrapped) if bootstrapped.exists() else shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build the wheel: run `make setup` (it bootstraps uv into .tools/)")
    return found


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_installed_wheel_migrates_and_checks_a_database(tmp_path: Path, empty_database_url: str) -> None:
    uv = _uv()
    python = sys._base_executable  # the machine's Python: uv must not try to download one
    _run(
        uv,
        "build",
        "--wheel",
        "--python",
        python,
        "--out-dir",
        str(tmp_path / "dist"),
        str(REPO_ROOT),
        cwd=tmp_path,
    )
    [wheel] = list((tmp_path / "dist").glob("devtools-*.whl"))
    venv = tmp_path / "venv"
    _run(uv, "venv", "--quiet", "--python", python, str(venv), cwd=tmp_path)
    _run(uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel), cwd=tmp_path)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DEVTOOLS_DATABASE_URL": empty_database_url,
        "DEVTOOLS_REDIS_URL": os.environ.get("DEVTOOLS_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "DEVTOOLS_DATA_DIR": str(tmp_path / "data"),
    }
    devtools = str(venv / "bin" / "devtools")
    # Run from an empty folder: nothing of the checkout is on the path or in the working directory.
    upgraded = _run(devtools, "db", "upgrade", cwd=tmp_path, env=env)
    migrations = len(list(MIGRATIONS_DIR.glob("*.sql")))
    assert f"{migrations} applied now" in upgraded.stdout, upgraded.stdout
    doctor = _run(devtools, "doctor", cwd=tmp_path, env=env)
    assert f"migrations: {migrations}/{migrations} applied" in doctor.stdout, doctor.stdout
