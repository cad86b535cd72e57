"""The flagship workflows, registered in the engine's workflow table on import.

A worker started with ``--workflows agent_orchestrator.workflows.catalog`` (and the
orchestrator service, which imports this) runs them.
"""

from __future__ import annotations

from agent_orchestrator.workflows.parallel_docs import ParallelDocsInput, build_parallel_docs_graph
from agent_orchestrator.workflows.pr_deployment import PRDeploymentInput, build_pr_deployment_graph
from agent_orchestrator.workflows.register import register_workflow
from agent_orchestrator.workflows.self_healing import SelfHealingInput, build_self_healing_graph
from agent_orchestrator.workflows.ticket import RECURSION_LIMIT, TicketInput, build_ticket_graph

# A run that keeps hitting transient failures (agents unreachable) is retried this many times.
FLAGSHIP_MAX_ATTEMPTS = 5

register_workflow(
    "pr_deployment",
    build_pr_deployment_graph,
    PRDeploymentInput,
    description="review, test, approve, deploy and verify a branch",
    max_attempts=FLAGSHIP_MAX_ATTEMPTS,
)
register_workflow(
    "parallel_docs",
    build_parallel_docs_graph,
    ParallelDocsInput,
    description="generate documentation types in parallel and write them to a folder",
    max_attempts=FLAGSHIP_MAX_ATTEMPTS,
)
register_workflow(
    "self_healing",
    build_self_healing_graph,
    SelfHealingInput,
    description="detect, diagnose, fix and verify an environment until healthy",
    max_attempts=FLAGSHIP_MAX_ATTEMPTS,
)

register_workflow(
    "ticket",
    build_ticket_graph,
    TicketInput,
    description="move a ticket through its phases: generate each phase's tasks, wait for them, move on",
    max_attempts=FLAGSHIP_MAX_ATTEMPTS,
    recursion_limit=RECURSION_LIMIT,
)

FLAGSHIP_WORKFLOWS = ("pr_deployment", "parallel_docs", "self_healing")
