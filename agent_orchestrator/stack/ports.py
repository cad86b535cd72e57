"""The port check `devtools up`, `devtools run` and the demo make before they start services.

`up` serves on the configured ports (clients rely on them), so a taken one stops it with a one-line
error naming the variable; the demo only needs some free port, so it moves a service whose port is taken.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from agent_orchestrator.stack.catalog import ServiceSpec
from shared.config import ENV_PREFIX, Settings
from shared.ports import port_is_free, tcp_socket


class PortInUseError(RuntimeError):
    """A service's configured port is taken; the message is one line naming the variable."""


def port_variable(spec: ServiceSpec) -> str:
    return f"{ENV_PREFIX}{spec.port_setting.upper()}"


def choose_ports(settings: Settings, specs: list[ServiceSpec], auto: bool) -> tuple[Settings, list[str]]:
    """Check every service's port is free; return the settings to start them with and what was moved.

    auto=False raises PortInUseError at the first taken port; auto=True gives that service a free
    port from the OS instead. A port configured twice counts as taken the second time. The services
    bind their ports moments later: a race with an unrelated program remains possible and shows up
    as a service that does not become ready.
    """
    claimed: set[int] = set()
    moved: dict[str, int] = {}
    notes: list[str] = []
    with ExitStack() as held:
        for spec in specs:
            port = int(getattr(settings, spec.port_setting))
            if port not in claimed and port_is_free(port, settings.host):
                claimed.add(port)
                continue
            variable = port_variable(spec)
            if not auto:
                why = "is given to another service too" if port in claimed else "is already in use"
                raise PortInUseError(
                    f"port {port} for {spec.name} {why} on {settings.host}; "
                    f"stop what holds it or set {variable} to a free port"
                )
            # Held (without SO_REUSEADDR) until every port is chosen, so the OS never hands one out
            # twice; configured ports are not held, so the OS may offer one of those: ask again.
            free = port
            while free in claimed or free == port:
                picked = held.enter_context(tcp_socket(settings.host))
                picked.bind((settings.host, 0))
                free = int(picked.getsockname()[1])
            claimed.add(free)
            moved[spec.port_setting] = free
            notes.append(f"port {port} ({variable}) is in use: {spec.name} takes {free}")
    return settings.model_copy(update=moved), notes


def export_ports(settings: Settings, specs: list[ServiceSpec]) -> None:
    """Make the services this process starts listen on `settings`' ports (they read DEVTOOLS_*_PORT)."""
    os.environ.update({port_variable(spec): str(getattr(settings, spec.port_setting)) for spec in specs})
