"""Cancelling a request after it was sent: its requester stopped waiting (the run was cancelled, the
step timed out), so the agent serving it must stop the work and free the slot.

The requester records the cancel under `<root>:cancel:<request_id>` (with a TTL past the request's
expiry) and publishes the request id on `<root>:cancels`. An agent checks the key before it starts
a request (a cancelled one is answered `cancelled` at once, however late it is read from its stream)
and, while requests run, listens on the channel and also re-reads the keys of its running requests
every second: a notice published while its connection was down is not lost, only late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from shared.bus.keys import BusKeys

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0
# A cancel outlives the request it cancels by this much (a redelivery after expiry is still refused).
CANCEL_GRACE_SECONDS = 300


def cancel_key(keys: BusKeys, request_id: str) -> str:
    return f"{keys.root}:cancel:{request_id}"


def cancels_channel(keys: BusKeys) -> str:
    return f"{keys.root}:cancels"


async def request_cancel(
    client: Any, keys: BusKeys, request_id: str, reason: str, ttl_seconds: float
) -> None:
    """Record and announce the cancel of `request_id` (idempotent)."""
    ttl = max(1, int(ttl_seconds) + CANCEL_GRACE_SECONDS)
    await client.set(cancel_key(keys, request_id), reason[:500], ex=ttl)
    await client.publish(
        cancels_channel(keys), json.dumps({"request_id": request_id, "reason": reason[:500]})
    )


async def cancel_reasons(client: Any, keys: BusKeys, request_ids: list[str]) -> dict[str, str]:
    """The cancelled ones among `request_ids`, with their reasons."""
    if not request_ids:
        return {}
    values = await client.mget([cancel_key(keys, r) for r in request_ids])
    return {
        r: (v.decode() if isinstance(v, bytes) else str(v))
        for r, v in zip(request_ids, values, strict=True)
        if v
    }


async def watch_cancels(
    client: Any,
    keys: BusKeys,
    running: Callable[[], list[str]],
    on_cancel: Callable[[str, str], Awaitable[None] | None],
    stop: asyncio.Event,
) -> None:
    """Until `stop`: call `on_cancel(request_id, reason)` for each running request that is cancelled."""
    while not stop.is_set():
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(cancels_channel(keys))
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=RECHECK_SECONDS)
                ids = running()
                if message is not None:
                    notice = json.loads(message["data"])
                    if notice.get("request_id") in ids:
                        await _call(on_cancel, notice["request_id"], str(notice.get("reason", "")))
                for request_id, reason in (await cancel_reasons(client, keys, ids)).items():
                    await _call(on_cancel, request_id, reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis went away: the keys are re-read once it is back
            log.warning("bus: cancel watcher reconnecting", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECHECK_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


async def _call(
    on_cancel: Callable[[str, str], Awaitable[None] | None], request_id: str, reason: str
) -> None:
    outcome = on_cancel(request_id, reason)
    if outcome is not None:
        await outcome
