"""HTTP and WebSocket endpoints of collaboration under /api/v1/collaboration: threads (open, list by
ticket/run/task, read with messages, resolve, reopen), messages (post, list after a cursor), handoffs
(request, list, read, accept, decline), and a WebSocket that streams a thread's messages live.

Whoever posts or decides is the caller's token's holder (a person). Agents take part over the bus
(engine.py). Refusals: 404 unknown thread/handoff/ticket, 409 a resolved thread or a decided
handoff, 422 naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from uuid import UUID

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.routing import APIRoute

from agent_orchestrator.api.auth import reader_of_token
from agent_orchestrator.api.runs import Writer
from agent_orchestrator.collaboration import (
    MESSAGES_CHANNEL,
    ArgumentError,
    Collaboration,
    CollaborationError,
    Decision,
    Handoff,
    HandoffStatus,
    Message,
    NewHandoff,
    NewMessage,
    NewThread,
    ParticipantKind,
    Thread,
    ThreadStatus,
)
from agent_orchestrator.runs.notify import Listener
from shared.http import error_body

PERSON = ParticipantKind.PERSON
MAX_LIMIT = 500
# A WebSocket refused for its token closes with this code (4000-4999 are the application's).
WS_UNAUTHORIZED = 4401
WS_PING_SECONDS = 15.0


class CollaborationRoute(APIRoute):
    """A route whose CollaborationErrors are answered with their status and the field they name."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except CollaborationError as exc:
                fields = (
                    [{"field": exc.field, "message": str(exc)}] if isinstance(exc, ArgumentError) else None
                )
                raise HTTPException(exc.status_code, error_body(str(exc), fields=fields)) from None

        return guarded


router = APIRouter(prefix="/api/v1/collaboration", tags=["collaboration"], route_class=CollaborationRoute)
socket_router = APIRouter(prefix="/api/v1/collaboration", tags=["collaboration"])


def collaboration_of(request: Request) -> Collaboration:
    collab: Collaboration | None = getattr(request.app.state, "collaboration", None)
    if collab is None:
        raise HTTPException(503, "collaboration is starting")
    return collab


Collab = Annotated[Collaboration, Depends(collaboration_of)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


# -- threads -------------------------------------------------------------------------------------


@router.post("/threads", status_code=201)
async def open_thread(body: NewThread, collab: Collab, who: Writer) -> Thread:
    return await collab.start_thread(body, who, PERSON)


@router.get("/threads")
async def list_threads(
    collab: Collab,
    ticket: UUID | None = None,
    run: UUID | None = None,
    task: UUID | None = None,
    status: ThreadStatus | None = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> list[Thread]:
    return await collab.store.threads(
        ticket_id=ticket, run_id=run, task_id=task, status=status, limit=limit, offset=offset
    )


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: UUID, collab: Collab, limit: Limit = 200) -> dict[str, Any]:
    """The thread, its first `limit` messages (then page with `/messages?after=`) and its handoffs."""
    thread = await collab.store.thread(thread_id)
    messages = await collab.store.messages(thread_id, 0, limit)
    handoffs = await collab.store.handoffs(thread_id=thread_id)
    return {
        **thread.model_dump(mode="json"),
        "messages": [m.model_dump(mode="json") for m in messages],
        "handoffs": [h.model_dump(mode="json") for h in handoffs],
    }


@router.post("/threads/{thread_id}/resolve")
async def resolve_thread(thread_id: UUID, collab: Collab, who: Writer) -> Thread:
    return await collab.store.set_status(thread_id, ThreadStatus.RESOLVED, who)


@router.post("/threads/{thread_id}/reopen")
async def reopen_thread(thread_id: UUID, collab: Collab, who: Writer) -> Thread:
    return await collab.store.set_status(thread_id, ThreadStatus.OPEN, who)


@router.post("/threads/{thread_id}/messages", status_code=201)
async def post_message(thread_id: UUID, body: NewMessage, collab: Collab, who: Writer) -> Message:
    return await collab.post(thread_id, who, PERSON, body)


@router.get("/threads/{thread_id}/messages")
async def list_messages(
    thread_id: UUID,
    collab: Collab,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="the last message id already seen")] = 0,
    limit: Limit = 200,
) -> list[Message]:
    await collab.store.thread(thread_id)  # 404 for an unknown thread, not an empty page
    return await collab.store.messages(thread_id, after, limit)


# -- handoffs ------------------------------------------------------------------------------------


@router.post("/handoffs", status_code=201)
async def request_handoff(body: NewHandoff, collab: Collab, who: Writer) -> Handoff:
    return await collab.request_handoff(body, who, PERSON)


@router.get("/handoffs")
async def list_handoffs(
    collab: Collab,
    ticket: UUID | None = None,
    thread: UUID | None = None,
    status: HandoffStatus | None = None,
    person: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> list[Handoff]:
    return await collab.store.handoffs(
        ticket_id=ticket, thread_id=thread, status=status, person=person, limit=limit, offset=offset
    )


@router.get("/handoffs/{handoff_id}")
async def get_handoff(handoff_id: UUID, collab: Collab) -> Handoff:
    return await collab.store.handoff(handoff_id)


@router.post("/handoffs/{handoff_id}/accept")
async def accept_handoff(
    handoff_id: UUID, collab: Collab, who: Writer, body: Decision | None = None
) -> Handoff:
    """A person takes it (their comment is posted as the answer, and resumes what the handoff names)."""
    return await collab.accept_as_person(handoff_id, who, body.comment if body else None)


@router.post("/handoffs/{handoff_id}/decline")
async def decline_handoff(
    handoff_id: UUID, collab: Collab, who: Writer, body: Decision | None = None
) -> Handoff:
    return await collab.decline_as_person(handoff_id, who, body.comment if body else None)


# -- the live thread -----------------------------------------------------------------------------


def _socket_identity(websocket: WebSocket) -> str | None:
    """The reader behind the socket's bearer token (header, or the console's cookie), or None."""
    token = websocket.headers.get("authorization", "")
    scheme, _, value = token.partition(" ")
    presented = value.strip() if scheme.lower() == "bearer" else websocket.cookies.get("devtools_token")
    return reader_of_token(presented, websocket.app.state.settings)


@socket_router.websocket("/ws")
async def thread_socket(
    websocket: WebSocket,
    thread: UUID,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> None:
    """Every message of `thread` after `after`, then each new one as it is posted, as JSON objects
    `{"type": "message", "message": {...}}`. A client that reconnects with the last id it saw gets
    what it missed, nothing twice."""
    if _socket_identity(websocket) is None:
        await websocket.close(code=WS_UNAUTHORIZED, reason="a bearer token of the API is needed")
        return
    collab: Collaboration | None = getattr(websocket.app.state, "collaboration", None)
    listener: Listener | None = getattr(websocket.app.state, "collab_listener", None)
    if collab is None or listener is None:
        await websocket.close(code=1013, reason="collaboration is starting")
        return
    try:
        await collab.store.thread(thread)
    except CollaborationError as exc:
        await websocket.close(code=4404, reason=str(exc)[:120])
        return
    await websocket.accept()
    woken = listener.subscribe(MESSAGES_CHANNEL, key=str(thread))
    closed = asyncio.create_task(_until_closed(websocket))
    cursor = after
    try:
        while not closed.done():
            for message in await collab.store.messages(thread, cursor, MAX_LIMIT):
                await websocket.send_json({"type": "message", "message": message.model_dump(mode="json")})
                cursor = message.id
            waiting = asyncio.create_task(woken.wait(WS_PING_SECONDS))
            await asyncio.wait([waiting, closed], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away while we were sending
    finally:
        woken.close()
        closed.cancel()
        with contextlib.suppress(RuntimeError):
            await websocket.close()


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
