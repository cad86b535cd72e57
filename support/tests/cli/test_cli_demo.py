"""`devtools demo` as `make demo` runs it: the real CLI on the embedded default (no URLs configured),
then `devtools down`; and what `demo` and `up` do when a port they need is taken."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_orchestrator.stack import SERVICES
from agent_orchestrator.stack.ports import PortInUseError, choose_ports, port_variable
from shared.config import load_settings
from shared.embedded import embedded_servers
from support.tests.agents.processes import REPO_ROOT, free_port, kill_deployed_apps

pytestmark = pytest.mark.integration

# Every service gets a free port of its own (the variables `devtools` reads).
PORT_VARIABLES = [port_variable(spec) for spec in SERVICES]
DOC_FILES = ("api.md", "user_guide.md", "deployment_guide.md")


def devtools(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_orchestrator", *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # A hang guard, not a timing assertion. Ctrl-C lets the CLI stop the services it started
        # (they run in sessions of their own, so killing the CLI alone would leave them behind).
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"devtools {' '.join(args)} still running after {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is `first_cell` (rich draws │ between cells)."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line)[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{output}")


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def demo_env() -> Iterator[dict[str, str]]:
    """The embedded default: no DEVTOOLS_* but a data dir of this test's own and free ports."""
    # Not under pytest's tmp_path: run as root, the embedded PostgreSQL runs as the `pgserver` user,
    # which must traverse every parent folder, and each pytest session resets its base folder to 0700.
    data_dir = Path(tempfile.mkdtemp(prefix="devtools-demo-")) / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTOOLS_")}
    env.update({name: str(free_port()) for name in PORT_VARIABLES})
    env.update(
        DEVTOOLS_DATA_DIR=str(data_dir),
        COLUMNS="200",  # rich tables are not wrapped, so rows can be read back
        PYTHONIOENCODING="utf-8",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    yield env
    # Pass or fail, neither the deployed app nor the embedded servers may outlive the test.
    kill_deployed_apps(data_dir)
    devtools(env, "down", timeout=120)
    for server in embedded_servers(data_dir):
        server.stop()
    shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.mark.timeout(600)
def test_demo_runs_the_main_job_on_the_embedded_default_and_down_stops_it(demo_env: dict[str, str]) -> None:
    data_dir = Path(demo_env["DEVTOOLS_DATA_DIR"])
    # Something else listens on the port the settings give infrastructure: the demo must move it.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        done = devtools({**demo_env, "DEVTOOLS_INFRASTRUCTURE_PORT": str(taken)}, "demo", timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr

    assert table_row(out, "postgresql")[1:3] == ["embedded", "healthy"]
    assert table_row(out, "redis")[1:3] == ["embedded", "healthy"]
    moved = re.search(
        rf"port {taken} \(DEVTOOLS_INFRASTRUCTURE_PORT\) is in use: infrastructure takes (\d+)", out
    )
    assert moved, out
    infrastructure = table_row(out, "infrastructure")
    assert infrastructure[2:4] == [f"http://127.0.0.1:{moved.group(1)}", "healthy"], out

    deployed = table_row(out, "pr_deployment")
    assert deployed[1] == "ok" and "deployed" in deployed[4] and "GET / -> HTTP 200" in deployed[4], out
    docs = table_row(out, "parallel_docs")
    assert docs[1] == "ok" and all(name in docs[4] for name in DOC_FILES), out
    for name in DOC_FILES:
        text = (data_dir / "demo" / "docs" / name).read_text()
        assert text.startswith("# greeting-service"), text
    assert "def greet(name: str" in (data_dir / "demo" / "docs" / "api.md").read_text()
    stopped = table_row(out, "stop the app")
    assert stopped[1] == "ok" and "connection refused" in stopped[4], out
    healed = table_row(out, "self_healing")
    assert healed[1] == "ok" and "healed" in healed[4] and "GET / -> HTTP 200" in healed[4], out
    ticket = table_row(out, "ticket")
    assert (
        ticket[1] == "ok" and ticket[4].startswith("DONE;") and "tasks succeeded on the agents" in ticket[4]
    ), out
    assert "INITIAL → IMPLEMENTATION" in out and "REFACTORING → DONE" in out, out
    # ... with its gates passed, one of them after the person's (here the demo's) approval.
    assert "gates passed: IMPLEMENTATION, INTEGRATION, REFACTORING (1 approval)" in ticket[4], out
    assert table_row(out, "services stopped")[1] == "ok", out

    # Every process the demo started is gone: the deployed app and each service.
    app_port = re.search(r"app port (\d+)\)", out)
    assert app_port, out
    # The services table comes first, so the first row of each name is the service's.
    urls = [table_row(out, spec.name)[2] for spec in SERVICES]
    service_ports = [int(url.rsplit(":", 1)[1]) for url in urls]
    assert all(refuses(port) for port in [int(app_port.group(1)), *service_ports])

    # The embedded servers outlive the command (later commands reuse them) until `devtools down`.
    pg, rd = embedded_servers(data_dir)
    assert pg.is_running() and rd.is_running()
    down = devtools(demo_env, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "postgresql: stopped" in down.stdout and "redis: stopped" in down.stdout, down.stdout
    assert not (pg.pgdata / "postmaster.pid").exists() and not rd.socket_path.exists()
    assert not pg.is_running() and not rd.is_running()


def test_up_refuses_a_taken_port_with_one_line_naming_the_variable(service_env: dict[str, str]) -> None:
    env = {**service_env, **{name: str(free_port()) for name in PORT_VARIABLES}, "COLUMNS": "200"}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        done = devtools({**env, "DEVTOOLS_CICD_PORT": str(taken)}, "up", timeout=120)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: port {taken} for cicd is already in use on 127.0.0.1; "
        "stop what holds it or set DEVTOOLS_CICD_PORT to a free port"
    ]
    # It failed before starting any service (each would have a log there).
    assert not (Path(service_env["DEVTOOLS_DATA_DIR"]) / "logs").exists()


def test_choose_ports_moves_only_taken_ports_and_never_gives_two_services_one_port(tmp_path: Path) -> None:
    specs = [s for s in SERVICES if s.name in ("agent-registry", "cicd", "documentation")]
    free = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        # documentation is configured onto the registry's port: free now, but not for both.
        settings = load_settings(
            data_dir=tmp_path, host="127.0.0.1", registry_port=free, cicd_port=taken, documentation_port=free
        )
        chosen, notes = choose_ports(settings, specs, auto=True)
        with pytest.raises(PortInUseError, match=f"port {taken} for cicd .* DEVTOOLS_CICD_PORT"):
            choose_ports(settings, specs, auto=False)

    assert chosen.registry_port == free
    assert chosen.cicd_port not in (taken, free)
    assert chosen.documentation_port not in (taken, free, chosen.cicd_port)
    documentation = chosen.documentation_port
    assert notes == [
        f"port {taken} (DEVTOOLS_CICD_PORT) is in use: cicd takes {chosen.cicd_port}",
        f"port {free} (DEVTOOLS_DOCUMENTATION_PORT) is in use: documentation takes {documentation}",
    ]
    assert (settings.cicd_port, settings.documentation_port) == (taken, free)  # the input is not changed
