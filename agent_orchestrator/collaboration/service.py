"""Collaboration as the API, the CLI, the engine and the platform's own reactions use it: the store's
calls plus what every state change owes its watchers, a bus event (`agent.message.sent`,
`agent.handoff.requested`, ...) and a run event on the run of the ticket (or the run) the thread is
about. A bus that is down costs the broadcast only: the state is in SQL and the run events already.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prometheus_client import Counter

from agent_orchestrator.collaboration.errors import ArgumentError, NotFound
from agent_orchestrator.collaboration.models import (
    Handoff,
    Message,
    NewHandoff,
    NewMessage,
    NewThread,
    ParticipantKind,
    Thread,
)
from agent_orchestrator.collaboration.store import CollaborationStore
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import TaskSpec, TaskStore
from agent_orchestrator.tickets import TicketNotFound, TicketStore
from shared.bus import BusUnavailable, EventBus, InterAgentEvent, InterAgentEventType

log = logging.getLogger(__name__)

SOURCE = "collaboration"

MESSAGES = Counter("devtools_collab_messages_total", "Messages posted in threads", ["kind", "author_kind"])
HANDOFFS = Counter("devtools_collab_handoffs_total", "Handoff state changes", ["status"])


class Collaboration:
    def __init__(self, store: CollaborationStore, bus: EventBus | None) -> None:
        self.store = store
        self.bus = bus
        self.tickets = TicketStore(store.pool)
        self.tasks = TaskStore(store.pool)
        self.runs = RunQueue(store.pool)

    # -- watchers ----------------------------------------------------------------------------------

    async def _announce(self, kind: InterAgentEventType, thread: Thread, data: dict[str, Any]) -> None:
        payload = {"thread_id": str(thread.id), **data}
        run_id = thread.run_id
        if run_id is None and thread.ticket_id is not None:
            try:
                run_id = (await self.tickets.get(thread.ticket_id)).run_id
            except TicketNotFound:
                run_id = None
        if run_id is not None:
            await self.runs.add_event(run_id, kind.value, "collaboration", payload)
        if self.bus is None:
            return
        correlation = str(thread.ticket_id or thread.run_id or thread.id)
        event = InterAgentEvent(
            event_type=kind, source_agent=SOURCE, payload=payload, correlation_id=correlation
        )
        try:
            await self.bus.emit(event)
        except BusUnavailable as exc:
            log.warning("not broadcast", extra={"event": kind.value, "error": str(exc)})

    # -- threads and messages ------------------------------------------------------------------------

    async def start_thread(
        self, new: NewThread, by: str, by_kind: ParticipantKind, origin: str | None = None
    ) -> Thread:
        if new.task_id is not None and new.ticket_id is None:
            task = await self.tasks.get(new.task_id)
            if task is None:
                raise NotFound(f"no task {new.task_id}")
            new = new.model_copy(update={"ticket_id": task.ticket_id})
        if new.run_id is not None and await self.runs.get(new.run_id) is None:
            raise NotFound(f"no run {new.run_id}")
        thread, created = await self.store.create_thread(new, by, by_kind, origin)
        if created:
            await self._announce(
                InterAgentEventType.AGENT_COLLAB_STARTED,
                thread,
                {"topic": thread.topic, "by": by, "participants": [p.name for p in thread.participants]},
            )
        return thread

    async def post(
        self, thread_id: UUID, author: str, author_kind: ParticipantKind, new: NewMessage
    ) -> Message:
        message = await self.store.post(thread_id, author, author_kind, new)
        MESSAGES.labels(message.kind.value, author_kind.value).inc()
        thread = await self.store.thread(thread_id)
        await self._announce(InterAgentEventType.AGENT_MESSAGE_SENT, thread, _message_event(message))
        return message

    # -- handoffs ----------------------------------------------------------------------------------

    async def request_handoff(
        self, new: NewHandoff, by: str, by_kind: ParticipantKind, origin: str | None = None
    ) -> Handoff:
        """Record a handoff; the engine offers it to the best live agent. Without a thread, one is opened
        about its task or ticket. The person who decides when no agent takes it is the one named, else
        the ticket's owner, else whoever handed it over when that is a person."""
        ticket_id = new.ticket_id
        if new.task_id is not None:
            task = await self.tasks.get(new.task_id)
            if task is None:
                raise NotFound(f"no task {new.task_id}")
            ticket_id = ticket_id or task.ticket_id
        owner = None
        if ticket_id is not None:
            try:
                owner = (await self.tickets.get(ticket_id)).created_by
            except TicketNotFound:
                raise NotFound(f"no ticket {ticket_id}") from None
        person = new.person or owner or (by if by_kind is ParticipantKind.PERSON else None)
        if person is None:
            raise ArgumentError("person", "person: name who decides when no agent takes it (no ticket owner)")
        thread_id = new.thread_id
        if thread_id is None:
            topic = f"handoff: {new.reason[:200]}"
            opened = await self.start_thread(
                NewThread(topic=topic, ticket_id=ticket_id, task_id=new.task_id), by, by_kind
            )
            thread_id = opened.id
        thread = await self.store.thread(thread_id)
        new = new.model_copy(update={"ticket_id": ticket_id or thread.ticket_id})
        handoff, created = await self.store.create_handoff(
            new, thread_id=thread_id, by=by, by_kind=by_kind, person=person, origin=origin
        )
        if not created:
            return handoff
        HANDOFFS.labels("requested").inc()
        await self._announce(InterAgentEventType.AGENT_HANDOFF_REQUESTED, thread, _handoff_event(handoff))
        return handoff

    async def accepted(self, handoff: Handoff) -> Handoff:
        """What an accepted handoff creates: the follow-up task on its ticket, linked to the thread
        (once: the task's key is the handoff's). A person's acceptance creates one only when the
        handoff says what to resume after the person (`context.on_person`), with their answer."""
        spec = _follow_up(handoff)
        if spec is not None and handoff.ticket_id is not None:
            ticket = await self.tickets.get(handoff.ticket_id)
            (task,) = await self.tasks.create_tasks(ticket.id, ticket.phase, [spec])
            handoff = await self.store.set_follow_up(handoff.id, task.id)
        HANDOFFS.labels("accepted").inc()
        thread = await self.store.thread(handoff.thread_id)
        await self._announce(InterAgentEventType.AGENT_HANDOFF_ACCEPTED, thread, _handoff_event(handoff))
        return handoff

    async def accept_as_person(self, handoff_id: UUID, person: str, comment: str | None) -> Handoff:
        handoff = await self.store.accept(handoff_id, person, ParticipantKind.PERSON, comment)
        if comment:
            await self.post(
                handoff.thread_id,
                person,
                ParticipantKind.PERSON,
                NewMessage(kind="answer", body=comment, client_key=f"handoff:{handoff.id}:answer"),
            )
        return await self.accepted(handoff)

    async def decline_as_person(self, handoff_id: UUID, person: str, comment: str | None) -> Handoff:
        handoff = await self.store.person_declines(handoff_id, person, comment)
        HANDOFFS.labels("declined").inc()
        thread = await self.store.thread(handoff.thread_id)
        await self._announce(InterAgentEventType.AGENT_HANDOFF_DECLINED, thread, _handoff_event(handoff))
        return handoff

    async def agent_declined(self, handoff: Handoff, agent: str) -> None:
        HANDOFFS.labels("offer_declined").inc()
        thread = await self.store.thread(handoff.thread_id)
        await self._announce(
            InterAgentEventType.AGENT_HANDOFF_DECLINED, thread, {**_handoff_event(handoff), "agent": agent}
        )

    async def to_person(self, handoff: Handoff, why: str) -> Handoff:
        moved = await self.store.to_person(handoff.id, why)
        HANDOFFS.labels("to_person").inc()
        body = f"@{moved.person}: {why}. Handed over for you to decide: {moved.reason}"
        await self.post(
            moved.thread_id,
            SOURCE,
            ParticipantKind.AGENT,
            NewMessage(kind="question", body=body[:20_000], client_key=f"handoff:{moved.id}:to_person"),
        )
        thread = await self.store.thread(moved.thread_id)
        await self._announce(InterAgentEventType.AGENT_HANDOFF_TO_PERSON, thread, _handoff_event(moved))
        return moved


def _follow_up(handoff: Handoff) -> TaskSpec | None:
    key = f"handoff-{handoff.id.hex[:12]}"
    link = {"handoff_id": str(handoff.id), "thread_id": str(handoff.thread_id), "reason": handoff.reason}
    if handoff.accepted_kind is ParticipantKind.PERSON:
        then = handoff.context.get("on_person")
        if not isinstance(then, dict) or not then.get("capability") or not then.get("request_type"):
            return None
        payload = {**(then.get("payload") or {}), "_handoff": {**link, "answer": handoff.decision_comment}}
        return TaskSpec(
            key=key,
            title=f"after {handoff.person}: {handoff.reason}"[:300],
            capability=str(then["capability"]),
            request_type=str(then["request_type"]),
            payload=payload,
        )
    if handoff.to_capability is None:
        return None
    payload = {k: v for k, v in handoff.context.items() if k != "on_person"}
    return TaskSpec(
        key=key,
        title=f"handed over: {handoff.reason}"[:300],
        capability=handoff.to_capability,
        request_type=handoff.request_type,
        payload={**payload, "_handoff": link},
    )


def _message_event(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "author": message.author,
        "author_kind": message.author_kind.value,
        "kind": message.kind.value,
        "body": message.body[:500],
        "reply_to": message.reply_to,
    }


def _handoff_event(handoff: Handoff) -> dict[str, Any]:
    return {
        "handoff_id": str(handoff.id),
        "status": handoff.status.value,
        "from": handoff.from_name,
        "to_capability": handoff.to_capability,
        "to_agent": handoff.to_agent,
        "offered_to": handoff.offered_to,
        "accepted_by": handoff.accepted_by,
        "person": handoff.person,
        "follow_up_task_id": str(handoff.follow_up_task_id) if handoff.follow_up_task_id else None,
        "reason": handoff.reason[:500],
    }
