"""Long-poll and WebSocket delivery of an account's event stream."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response, WebSocket, WebSocketDisconnect
from starlette.datastructures import Headers, QueryParams
from starlette.types import Scope
from starlette.websockets import WebSocketState

from directo.accounts import cookies
from directo.accounts import service as accounts
from directo.accounts.api import AppDep, Me, bearer_token
from directo.app import App
from directo.conversations import service as conversations
from directo.core import metrics
from directo.core.broker import Subscription
from directo.core.errors import DirectoError
from directo.core.http import HotHandler, HotSocket, errors
from directo.events import service
from directo.events.schemas import EventPage
from directo.presence import service as presence

router = APIRouter(prefix="/api/v1", tags=["events"])
log = logging.getLogger("directo.events")


CURSOR_MAX_LENGTH, POLL_SECONDS_DEFAULT, POLL_SECONDS_MAX = 128, 25, 60


@router.get("/events", response_model=EventPage, responses=errors(400, 401, 410))
async def poll(
    me: Me, app: AppDep,
    after: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH,
                                       description="the last cursor you saw; omit to start "
                                                   "from now")] = None,
    timeout: Annotated[float, Query(ge=0, le=POLL_SECONDS_MAX,
                                    description="seconds to wait")] = POLL_SECONDS_DEFAULT,
) -> Response:
    return await _poll(app, me.id, after, timeout)


async def _poll(app: App, account_id: str, after: str | None, timeout: float) -> Response:
    events, seq = await service.long_poll(app, account_id, after, timeout)
    metrics.events_delivered.labels("poll").inc(len(events))
    page = EventPage.model_validate({"events": events, "cursor": service.encode_cursor(seq)})
    return Response(page.model_dump_json(), media_type="application/json")


_PLAIN_SECONDS = re.compile(r"\d{1,2}(?:\.\d{1,3})?")


def hot_routes(app: App) -> dict[Callable[..., Any], HotHandler]:
    """``poll`` as a hot route (core/http.HotRoutes), so that a waiting long poll holds none
    of FastAPI's layers: a bearer token, a cursor of allowed length and a timeout written
    plainly (``25``, ``2.5``) are answered here; anything else goes on to the route above,
    which answers it (with the standard validation error, say)."""
    async def poll_now(_params: dict[str, str], scope: Scope, _body: bytes) -> Response | None:
        token = bearer_token(Headers(scope=scope))
        query = QueryParams(scope["query_string"])
        after, timeout = query.get("after"), query.get("timeout", str(POLL_SECONDS_DEFAULT))
        if (token is None or (after is not None and len(after) > CURSOR_MAX_LENGTH)
                or not _PLAIN_SECONDS.fullmatch(timeout)
                or float(timeout) > POLL_SECONDS_MAX):
            return None
        account_id = await accounts.account_id_of(app, token)
        return await _poll(app, account_id, after, float(timeout))

    return {poll: poll_now}


STREAM_PATH = router.prefix + "/stream"


def hot_sockets(app: App) -> dict[str, HotSocket]:
    """The event stream, served by ``core/http.HotRoutes`` rather than FastAPI's router."""
    return {STREAM_PATH: functools.partial(stream, app)}


async def stream(app: App, websocket: WebSocket) -> None:
    """``GET /api/v1/stream`` (WebSocket): push every event after the query's ``after``
    cursor, then live ones. Frames are the same JSON objects as in ``GET /events``; control
    frames are ``ready`` and ``resync_required``."""
    after = websocket.query_params.get("after")
    token = bearer_token(websocket.headers) or websocket.query_params.get("token")
    if token is None and cookies.same_origin(websocket.headers):
        token = websocket.cookies.get(cookies.SESSION_COOKIE)
    try:
        account, _ = await accounts.authenticate(app, token)
        seq = service.decode_cursor(after) if after else None
    except DirectoError as error:
        # accept first: a close before the handshake becomes a bare HTTP 403 and the client
        # never learns the reason, so the SDK would retry a bad token forever
        await websocket.accept()
        await websocket.close(code=_close_code(error), reason=error.code)
        return
    await websocket.accept()
    metrics.streams_open.inc()
    sub = service.subscribe(app, account.id)
    presence.stream_opened(app, account.id)
    reader = asyncio.create_task(_read_client(websocket, app, account.id, sub))
    try:
        await _push(websocket, app, account.id, sub, seq)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()
        presence.stream_closed(app, account.id)
        reader.cancel()
        metrics.streams_open.dec()
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close()


async def _send(websocket: WebSocket, frame: dict[str, Any]) -> None:
    await websocket.send_text(orjson.dumps(frame).decode())


def _close_code(error: DirectoError) -> int:
    return 4401 if error.status == 401 else 4400


async def _push(websocket: WebSocket, app: Any, account_id: str, sub: Subscription,
                seq: int | None) -> None:
    try:
        await _push_events(websocket, app, account_id, sub, seq)
    except DirectoError as error:  # a bad cursor, or the account erased meanwhile
        await websocket.close(code=_close_code(error), reason=error.code)


async def _push_events(websocket: WebSocket, app: Any, account_id: str, sub: Subscription,
                       seq: int | None) -> None:
    try:
        events, seq = await service.page(app, account_id, seq)
    except service.ResyncRequired:
        _, seq = await service.page(app, account_id, None)
        await _send(websocket, {"type": "resync_required",
                                "cursor": service.encode_cursor(seq)})
        events = []
    ready_sent = False
    while True:
        for event in events:
            await _send(websocket, event)
        sub.position = seq
        metrics.events_delivered.labels("websocket").inc(len(events))
        if len(events) < service.BATCH:
            if not ready_sent:
                await _send(websocket, {"type": "ready", "cursor": service.encode_cursor(seq)})
                ready_sent = True
            await sub.wait(service.IDLE_RECHECK_SECONDS)
            if reader_done(websocket):
                return
            _, ephemeral = sub.take()
            for event in ephemeral:
                await _send(websocket, event)
        events, seq = await service.page(app, account_id, seq)


def reader_done(websocket: WebSocket) -> bool:
    return websocket.client_state == WebSocketState.DISCONNECTED


async def _read_client(websocket: WebSocket, app: Any, account_id: str,
                       sub: Subscription) -> None:
    """Frames from the client: ``{"type": "typing", "conversation_id": ...}`` and pings."""
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(frame, dict):
                continue
            if frame.get("type") == "typing" and isinstance(frame.get("conversation_id"), str):
                with contextlib.suppress(DirectoError):
                    await conversations.typing(app, account_id, frame["conversation_id"])
            elif frame.get("type") == "ping":
                await _send(websocket, {"type": "pong"})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.notify_stream()  # wake the pusher so it notices the disconnect at once
