"""Coalescing of Redis writes: calls made in the same event-loop turn share one pipeline.

On loopback most of a small command's cost is the write system call and the wake-up of the
server, so many requesters (or many finished handlers) sending at once pay for one of each.
A lone call goes out one loop turn later than it would alone, which is microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Coalescer[T, R]:
    def __init__(self, send: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        # send gets the batch in submission order and returns one result per item (or raises).
        self._send = send
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        self._flusher = asyncio.ensure_future(self._flush(batch))

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _future in batch])
        except BaseException as exc:
            for _item, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_item, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
