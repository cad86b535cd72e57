"""Requests a consumer will not run: malformed entries and entries delivered too often.

Both go to the dead-letter stream; whoever waits for them is told with an `error` response, so a
requester learns of the problem at once instead of after its timeout.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from shared.bus.connection import BusOptions, dead_letter
from shared.bus.events import AgentRequestEvent, AgentResponseEvent, ResponseStatus
from shared.bus.keys import REQUEST_GROUP, BusKeys
from shared.bus.replies import ReplyPublisher

log = logging.getLogger(__name__)

UNKNOWN_REQUESTER = "unknown"


@dataclass(frozen=True)
class ReplyAddress:
    """What is needed to answer a request that failed validation."""

    request_id: str
    reply_to: str
    source_agent: str


def reply_address(raw: str | None, keys: BusKeys) -> ReplyAddress | None:
    """The request id and reply stream of a malformed request entry, when they can be recovered.

    Only a JSON object with a non-empty string request_id and a reply_to naming a bus inbox
    qualifies: the entry is untrusted, and writing to any key it names could clobber other data.
    """
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    request_id, reply_to = document.get("request_id"), document.get("reply_to")
    if not (isinstance(request_id, str) and request_id and isinstance(reply_to, str)):
        return None
    if not reply_to.startswith(f"{keys.root}:inbox:"):
        return None
    source = document.get("source_agent")
    return ReplyAddress(
        request_id, reply_to, source if isinstance(source, str) and source else UNKNOWN_REQUESTER
    )


class Rejecter:
    """Dead-letters request entries of one consumer, answering their requester when possible."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: BusKeys,
        options: BusOptions,
        publisher: ReplyPublisher,
        agent_id: str,
    ) -> None:
        self._client = client
        self._keys = keys
        self._options = options
        self._publisher = publisher
        self._agent_id = agent_id

    async def malformed(self, stream: str, entry_id: str, raw: str | None, error: str) -> None:
        address = reply_address(raw, self._keys)
        if address is not None:
            response = AgentResponseEvent(
                request_id=address.request_id,
                source_agent=self._agent_id,
                target_agent=address.source_agent,
                status=ResponseStatus.ERROR,
                error=f"malformed request: {error}"[:2000],
            )
            # Answer before dead-lettering: a crash in between redelivers the entry, and a second
            # copy of the answer is dropped by the requester.
            try:
                await self._publisher.publish_to(address.reply_to, response)
            except ResponseError as exc:  # e.g. WRONGTYPE: reply_to is not a stream
                log.warning("bus: could not answer malformed request", extra={"error": str(exc)})
        await self._dead_letter(stream, entry_id, raw, "malformed", error)

    async def exhausted(
        self, stream: str, entry_id: str, raw: str | None, request: AgentRequestEvent, deliveries: int
    ) -> None:
        error = f"request dead-lettered after {deliveries - 1} deliveries without an answer"
        await self._dead_letter(stream, entry_id, raw, "max_deliveries", error)
        response = AgentResponseEvent.for_request(request, self._agent_id, ResponseStatus.ERROR, error=error)
        await self._publisher.publish(request, response)

    async def _dead_letter(
        self, stream: str, entry_id: str, raw: str | None, reason: str, error: str
    ) -> None:
        await dead_letter(
            self._client,
            self._keys,
            stream=stream,
            group=REQUEST_GROUP,
            entry_id=entry_id,
            raw=raw,
            reason=reason,
            error=error,
            maxlen=self._options.dead_letter_maxlen,
            delete_entry=True,
        )
