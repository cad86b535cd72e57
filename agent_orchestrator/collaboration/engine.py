"""The orchestrator's collaboration loop: delivers messages to agent participants and drives handoffs.

Delivery (at least once, acted on once): due deliveries are claimed under a lease and sent over the
bus as `COLLAB_MESSAGE` requests whose id is derived from the message and the agent, so a resend is
the same request (an agent that answered it answers again from the bus's stored first answer). The
acknowledgement and the agent's reply are recorded in one statement. An agent that was killed before
answering gets the message again once the lease passes or its entry is reclaimed.

Handoffs: one offered at a time to the best live agent for its capability (the registry's order,
decliners left out); the offer is a `HANDOFF_OFFER` request answered `{"accept", "reason"}`. An offer
unanswered within `offer_seconds` counts as declined. With no agent left, or once the handoff's own
timeout passes, a person decides (`awaiting_person`): nothing goes into a void.

Several orchestrators may run this loop: claims skip each other's rows, and every handoff transition
names the state it leaves, so a lost race is a `Conflict` and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from agent_orchestrator.collaboration.errors import Conflict
from agent_orchestrator.collaboration.models import Handoff, HandoffStatus, ParticipantKind
from agent_orchestrator.collaboration.service import Collaboration
from agent_orchestrator.collaboration.store import HANDOFFS_CHANNEL, MESSAGES_CHANNEL
from agent_orchestrator.runs.notify import Listener
from shared.agents import RegistryClient, RegistryError
from shared.bus import AgentRequestEvent, BusUnavailable, EventBus, ResponseStatus

log = logging.getLogger(__name__)

ENGINE_AGENT_ID = "collaboration"
COLLAB_MESSAGE = "COLLAB_MESSAGE"
HANDOFF_OFFER = "HANDOFF_OFFER"
UNAVAILABLE = frozenset({"offline", "draining"})


@dataclass
class EngineOptions:
    batch_size: int = 50
    delivery_lease_seconds: float = 60.0  # a claimed delivery is sent again after this if unanswered
    delivery_timeout_seconds: float = 30.0  # how long one send waits for the agent's acknowledgement
    retry_max_seconds: float = 60.0  # longest pause before a failed delivery is tried again
    offer_seconds: float = 30.0  # how long an agent has to accept or decline an offer
    idle_wait_seconds: float = 2.0  # longest sleep without a notification


class CollaborationEngine:
    def __init__(
        self,
        collaboration: Collaboration,
        bus: EventBus,
        registry: RegistryClient,
        database_url: str,
        options: EngineOptions | None = None,
    ) -> None:
        self.collab = collaboration
        self.store = collaboration.store
        self.bus = bus
        self.registry = registry
        self.database_url = database_url
        self.options = options or EngineOptions()
        self._inflight: set[asyncio.Task[None]] = set()
        self._offering: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        listener = Listener(self.database_url, [MESSAGES_CHANNEL, HANDOFFS_CHANNEL], name="devtools-collab")
        await listener.start()
        messages, handoffs = listener.subscribe(MESSAGES_CHANNEL), listener.subscribe(HANDOFFS_CHANNEL)
        log.info("collaboration engine started")
        try:
            while not stop.is_set():
                try:
                    await self.deliver_once()
                    await self.drive_handoffs_once()
                except (RegistryError, BusUnavailable, OSError, psycopg.OperationalError) as exc:
                    log.warning("collaboration round failed", extra={"error": str(exc)})
                except Exception:  # a bug must not stop collaboration for good
                    log.exception("collaboration round failed unexpectedly")
                wait = self.options.idle_wait_seconds
                with contextlib.suppress(psycopg.Error):
                    due = await self.store.seconds_until_next_handoff_due()
                    wait = min(wait, due if due is not None else wait)
                woken = [asyncio.create_task(s.wait(max(wait, 0.01))) for s in (messages, handoffs)]
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait([*woken, stopping], return_when=asyncio.FIRST_COMPLETED)
                for task in [*woken, stopping]:
                    task.cancel()
        finally:
            messages.close()
            handoffs.close()
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await listener.stop()
            log.info("collaboration engine stopped")

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # -- delivery --------------------------------------------------------------------------------

    async def deliver_once(self) -> int:
        claimed = await self.store.claim_deliveries(
            self.options.batch_size, self.options.delivery_lease_seconds
        )
        for row in claimed:
            self._spawn(self._deliver(int(row["message_id"]), str(row["agent"]), int(row["attempts"])))
        return len(claimed)

    async def _deliver(self, message_id: int, agent: str, attempts: int) -> None:
        message = await self.store.message(message_id)
        if message is None:
            return
        thread = await self.store.thread(message.thread_id)
        payload = {
            "message_id": message.id,
            "thread_id": str(thread.id),
            "topic": thread.topic,
            "ticket_id": str(thread.ticket_id) if thread.ticket_id else None,
            "task_id": str(thread.task_id) if thread.task_id else None,
            "author": message.author,
            "author_kind": message.author_kind.value,
            "kind": message.kind.value,
            "body": message.body,
            "attachments": message.attachments,
            "reply_to": message.reply_to,
        }
        request = AgentRequestEvent(
            request_id=f"collab-message-{message.id}-{agent}",
            source_agent=ENGINE_AGENT_ID,
            target_agent=agent,
            request_type=COLLAB_MESSAGE,
            payload=payload,
            timeout_seconds=self.options.delivery_timeout_seconds,
            correlation_id=str(thread.ticket_id or thread.id),
        )
        try:
            response = await self.bus.request_agent(request)
        except BusUnavailable as exc:
            await self._failed(message_id, agent, attempts, f"bus unavailable: {exc}")
            return
        if response.status is ResponseStatus.SUCCESS:
            reply = (response.result or {}).get("reply")
            await self.store.ack_delivery(message_id, agent, reply if _valid_reply(reply) else None)
        elif response.status is ResponseStatus.REJECTED and response.error_code != "no_live_agent":
            # It got the message and refused it (an agent without COLLAB_MESSAGE): delivered, not acted on.
            await self.store.ack_delivery(message_id, agent, None)
        else:
            await self._failed(message_id, agent, attempts, response.error or response.status.value)

    async def _failed(self, message_id: int, agent: str, attempts: int, error: str) -> None:
        retry = min(2.0**attempts, self.options.retry_max_seconds)
        log.warning("message not delivered", extra={"message_id": message_id, "agent": agent, "error": error})
        await self.store.delivery_failed(message_id, agent, error, retry)

    # -- handoffs --------------------------------------------------------------------------------

    async def drive_handoffs_once(self) -> int:
        due = [
            h
            for h in await self.store.due_handoffs(self.options.batch_size)
            if str(h.id) not in self._offering
        ]
        for handoff in due:
            try:
                await self._drive(handoff)
            except Conflict:
                continue  # another orchestrator (or a person) moved it first
        return len(due)

    async def _drive(self, handoff: Handoff) -> None:
        if handoff.offered_to is not None:
            # The offer lapsed (or the deadline passed while it was out): that agent did not take it.
            handoff = await self.store.decline_offer(
                handoff.id, handoff.offered_to, "no answer to the offer in time"
            )
            await self.collab.agent_declined(handoff, handoff.declined_by[-1]["agent"])
        if _past_deadline(handoff):
            await self.collab.to_person(handoff, f"nobody accepted within {handoff.timeout_seconds:g}s")
            return
        candidate = await self._candidate(handoff)
        if candidate is None:
            declined = ", ".join(str(d["agent"]) for d in handoff.declined_by) or "none"
            wanted = handoff.to_agent or f"capability {handoff.to_capability}"
            await self.collab.to_person(
                handoff, f"no live agent for {wanted} accepted it (declined: {declined})"
            )
            return
        offered = await self.store.offer(handoff.id, candidate, self.options.offer_seconds)
        self._offering.add(str(offered.id))
        self._spawn(self._offer(offered, candidate))

    async def _candidate(self, handoff: Handoff) -> str | None:
        declined = {str(d["agent"]) for d in handoff.declined_by}
        if handoff.to_agent is not None:
            if handoff.to_agent in declined:
                return None
            record = await self.registry.get_agent(handoff.to_agent)
            live = record is not None and record.get("status") not in UNAVAILABLE
            return handoff.to_agent if live else None
        assert handoff.to_capability is not None
        self.registry.invalidate_cache()
        for record in await self.registry.search([handoff.to_capability]):
            if record.get("status") in UNAVAILABLE:
                continue
            name = str((record.get("metadata") or {}).get("service") or record["agent_id"])
            if name not in declined:
                return name
        return None

    async def _offer(self, handoff: Handoff, agent: str) -> None:
        try:
            request = AgentRequestEvent(
                request_id=f"handoff-offer-{handoff.id}-{handoff.offers}",
                source_agent=ENGINE_AGENT_ID,
                target_agent=agent,
                request_type=HANDOFF_OFFER,
                payload=_offer_payload(handoff),
                timeout_seconds=self.options.offer_seconds,
                correlation_id=str(handoff.ticket_id or handoff.thread_id),
            )
            try:
                response = await self.bus.request_agent(request)
            except BusUnavailable as exc:
                log.warning(
                    "handoff offer not sent", extra={"handoff_id": str(handoff.id), "error": str(exc)}
                )
                return  # the offer lapses and is counted as declined
            result = response.result or {}
            if response.status is ResponseStatus.SUCCESS and result.get("accept") is True:
                accepted = await self.store.accept(
                    handoff.id, agent, ParticipantKind.AGENT, str(result.get("reason") or "")
                )
                await self.collab.accepted(accepted)
                return
            if response.status is ResponseStatus.TIMEOUT:
                return  # the lapse is handled by the next round, like a lost answer
            why = str(result.get("reason") or response.error or response.status.value)
            declined = await self.store.decline_offer(handoff.id, agent, why)
            await self.collab.agent_declined(declined, agent)
        except Conflict:
            pass  # decided meanwhile (a person, or the deadline)
        except Exception:
            log.exception("handoff offer failed", extra={"handoff_id": str(handoff.id)})
        finally:
            self._offering.discard(str(handoff.id))


def _past_deadline(handoff: Handoff) -> bool:
    return handoff.status is HandoffStatus.OFFERED and handoff.deadline_at <= datetime.now(UTC)


def _offer_payload(handoff: Handoff) -> dict[str, Any]:
    return {
        "handoff_id": str(handoff.id),
        "thread_id": str(handoff.thread_id),
        "ticket_id": str(handoff.ticket_id) if handoff.ticket_id else None,
        "task_id": str(handoff.task_id) if handoff.task_id else None,
        "from_name": handoff.from_name,
        "to_capability": handoff.to_capability,
        "to_agent": handoff.to_agent,
        "request_type": handoff.request_type,
        "reason": handoff.reason,
        "context": {k: v for k, v in handoff.context.items() if k != "on_person"},
    }


def _valid_reply(reply: Any) -> bool:
    return (
        isinstance(reply, dict)
        and isinstance(reply.get("body"), str)
        and 0 < len(reply["body"]) <= 20_000
        and reply.get("kind", "answer") in ("comment", "question", "answer", "finding", "decision")
        and isinstance(reply.get("attachments", []), list)
    )
