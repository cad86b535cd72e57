"""What `devtools up`, `devtools run` and the demo start: the service catalog, port choice, the supervisor."""

from agent_orchestrator.stack.catalog import SERVICES, ServiceSpec, available_services
from agent_orchestrator.stack.ports import PortInUseError, choose_ports, export_ports
from agent_orchestrator.stack.supervisor import RunningService, Supervisor

__all__ = [
    "SERVICES",
    "PortInUseError",
    "RunningService",
    "ServiceSpec",
    "Supervisor",
    "available_services",
    "choose_ports",
    "export_ports",
]
