"""`devtools up` with nothing filtered: the registry and all six agents start and register."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent_orchestrator.stack import SERVICES
from agent_orchestrator.stack.ports import port_variable
from support.tests.agents.processes import PLATFORM_TOKEN, REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.integration

EXPECTED_CAPABILITIES = {
    "orchestrator": {"orchestration"},
    "feature-dev": {"feature_dev"},
    "code-review": {"code_review", "code_explanation"},
    "infrastructure": {"infrastructure"},
    "cicd": {"cicd"},
    "documentation": {"documentation", "readme_update"},
}
# Every service gets a free port of its own (the variables `devtools` reads).
PORT_VARIABLES = [port_variable(spec) for spec in SERVICES]


def _registered(url: str) -> dict[str, set[str]]:
    agents = httpx.get(f"{url}/agents", timeout=5).json()
    items = agents["agents"] if isinstance(agents, dict) else agents
    return {a["agent_id"]: {c["name"] for c in a["capabilities"]} for a in items if a["status"] != "offline"}


def test_up_starts_the_registry_and_six_agents(service_env: dict[str, str], tmp_path: Path) -> None:
    ports = {name: str(free_port()) for name in PORT_VARIABLES}
    env = {
        **service_env,
        **ports,
        "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
        "DEVTOOLS_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    registry_url = f"http://127.0.0.1:{ports['DEVTOOLS_REGISTRY_PORT']}"
    out = tmp_path / "up.out"
    with out.open("wb") as handle:
        up = subprocess.Popen(
            [sys.executable, "-m", "agent_orchestrator", "up"],
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "services ready" in out.read_text(), deadline_s=180, what="devtools up ready")
        assert _registered(registry_url) == EXPECTED_CAPABILITIES
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=120)
    text = out.read_text()
    assert code == 0, text
    assert "stopped 7 services" in text
