"""The `devtools` command line (entry point `agent_orchestrator.cli:main`)."""

from agent_orchestrator.cli.main import app, main

__all__ = ["app", "main"]
