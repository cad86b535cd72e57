"""Publishing a response: to the requester's inbox, remembered for redeliveries, acknowledged atomically.

One Lua call per response does all of it, so the request entry is acknowledged only together with
its published answer. Responses finished in the same loop turn go out in one pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from shared.bus.batch import Coalescer
from shared.bus.connection import BusOptions, with_retries
from shared.bus.events import AgentRequestEvent, AgentResponseEvent
from shared.bus.keys import DATA_FIELD, BusKeys

# KEYS: reply stream, result key, request stream.
# ARGV: document, inbox maxlen, inbox ttl, result ttl (0: do not remember), group, entry id ('' : no ack),
#       reply ('1': publish to the reply stream).
PUBLISH_LUA = f"""
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', '{DATA_FIELD}', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '0' then
  -- NX: if two executions raced (a stalled replica's lease was taken over), the first stored answer,
  -- which is also the first on the inbox and the one the requester kept, stays the answer.
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4], 'NX')
end
if ARGV[6] ~= '' then
  redis.call('XACK', KEYS[3], ARGV[5], ARGV[6])
  -- Handled entries leave the stream: request streams hold only work still to do and never need
  -- trimming (trimming could drop accepted requests).
  redis.call('XDEL', KEYS[3], ARGV[6])
end
return 1
"""


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Reply:
    keys: list[str]
    args: list[str | int]


class ReplyPublisher:
    def __init__(self, client: aioredis.Redis, keys: BusKeys, options: BusOptions) -> None:
        self._client = client
        self._keys = keys
        self._options = options
        self._script = client.register_script(PUBLISH_LUA)
        self._batches: Coalescer[_Reply, None] = Coalescer(self._send)

    async def publish(
        self,
        request: AgentRequestEvent,
        response: AgentResponseEvent,
        *,
        ack: tuple[str, str, str] | None = None,
        remember: bool = False,
    ) -> None:
        """Answer (if anyone waits), remember the answer (non-idempotent handlers), acknowledge.

        Raises BusUnavailable after bounded retries; the entry then stays pending (not acknowledged).
        """
        await self._submit(request.reply_to, response, ack=ack, remember=remember)

    async def publish_to(self, reply_to: str, response: AgentResponseEvent) -> None:
        """Answer on a reply stream without a parsed request (a malformed one); nothing is acknowledged."""
        await self._submit(reply_to, response, ack=None, remember=False)

    async def _submit(
        self,
        reply_to: str | None,
        response: AgentResponseEvent,
        *,
        ack: tuple[str, str, str] | None,
        remember: bool,
    ) -> None:
        result_key = self._keys.result(response.request_id)
        if reply_to is not None and not reply_to.startswith(f"{self._keys.root}:inbox:"):
            # reply_to comes from the request: answering on any other key would let a requester make
            # agents write into arbitrary Redis keys (and a non-stream key fails every redelivery).
            log.warning(
                "reply_to is not a bus inbox; answer not published",
                extra={"request_id": response.request_id, "reply_to": reply_to[:200]},
            )
            reply_to = None
        stream, group, entry_id = ack or (result_key, "", "")
        await self._batches.submit(
            _Reply(
                keys=[reply_to or result_key, result_key, stream],
                args=[
                    response.to_json(),
                    self._options.inbox_maxlen,
                    self._options.inbox_ttl_seconds,
                    self._options.result_ttl_seconds if remember else 0,
                    group,
                    entry_id,
                    "1" if reply_to else "0",
                ],
            )
        )

    async def _send(self, batch: list[_Reply]) -> list[None]:
        async def attempt() -> None:
            if len(batch) == 1:
                await self._script(keys=batch[0].keys, args=batch[0].args)  # EVALSHA, loading if needed
                return
            try:
                await self._pipelined(batch)
            except NoScriptError:  # Redis restarted (or SCRIPT FLUSH): no call ran, send them again
                await self._client.script_load(PUBLISH_LUA)
                await self._pipelined(batch)

        await with_retries(attempt, self._options.retry, "response")
        return [None] * len(batch)

    async def _pipelined(self, batch: list[_Reply]) -> None:
        # Plain EVALSHA: redis-py's script-in-pipeline support would add a SCRIPT EXISTS round trip.
        pipe = self._client.pipeline(transaction=False)
        for reply in batch:
            pipe.evalsha(self._script.sha, len(reply.keys), *reply.keys, *reply.args)
        await pipe.execute()


async def remembered_response(
    client: aioredis.Redis, keys: BusKeys, request_id: str
) -> AgentResponseEvent | None:
    document = await client.get(keys.result(request_id))
    return None if document is None else AgentResponseEvent.from_json(document)
