"""Collaboration: threads about a ticket, a task, a run or a topic, their messages (delivered to each
agent participant at least once, acted on once) and handoffs of work to a capability, an agent or a
person. SQL in config/state/100_collaboration.sql; docs/COLLABORATION.md."""

from agent_orchestrator.collaboration.engine import CollaborationEngine, EngineOptions
from agent_orchestrator.collaboration.errors import ArgumentError, CollaborationError, Conflict, NotFound
from agent_orchestrator.collaboration.models import (
    Decision,
    Handoff,
    HandoffStatus,
    Message,
    MessageKind,
    NewHandoff,
    NewMessage,
    NewThread,
    Participant,
    ParticipantKind,
    Thread,
    ThreadStatus,
)
from agent_orchestrator.collaboration.service import Collaboration
from agent_orchestrator.collaboration.store import HANDOFFS_CHANNEL, MESSAGES_CHANNEL, CollaborationStore

__all__ = [
    "HANDOFFS_CHANNEL",
    "MESSAGES_CHANNEL",
    "ArgumentError",
    "Collaboration",
    "CollaborationEngine",
    "CollaborationError",
    "CollaborationStore",
    "Conflict",
    "Decision",
    "EngineOptions",
    "Handoff",
    "HandoffStatus",
    "Message",
    "MessageKind",
    "NewHandoff",
    "NewMessage",
    "NewThread",
    "NotFound",
    "Participant",
    "ParticipantKind",
    "Thread",
    "ThreadStatus",
]
