"""HTTP routes for conversations and messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.types import Scope

from directo.accounts import service as accounts_service
from directo.accounts.api import AppDep, Me, bearer_token
from directo.app import App
from directo.conversations import service
from directo.conversations.schemas import (
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    ConversationStart,
    Folder,
    MessageCreate,
    MessageEdit,
    MessageOut,
    MessagePage,
    ReadMark,
    ReportCreate,
    ReportOut,
    UnreadOut,
)
from directo.core.http import HotHandler, errors

router = APIRouter(prefix="/api/v1")
IdParam = Annotated[str, Path(max_length=64)]
EmojiParam = Annotated[str, Path(max_length=64)]


def _conversation(view: dict[str, Any]) -> ConversationOut:
    return ConversationOut.model_validate(view)


def _json(model: BaseModel, status: int) -> Response:
    """A model as JSON, serialised once, in pydantic-core, for routes whose status varies."""
    return Response(model.model_dump_json(by_alias=True), status_code=status,
                    media_type="application/json")


async def _send(app: App, actor_id: str, conversation_id: str, body: MessageCreate) -> Response:
    message, created = await service.send(app, actor_id, conversation_id, body.client_id,
                                          body.text, body.reply_to)
    return _json(MessageOut.model_validate(message), 201 if created else 200)


# The send route first: routes are matched in order (see app.py).
@router.post("/conversations/{conversation_id}/messages", response_model=MessageOut,
             status_code=201,
             responses={200: {"model": MessageOut, "description": "a retry: the original"},
                        **errors(400, 401, 403, 404, 409, 413, 422, 429)}, tags=["messages"])
async def send_message(conversation_id: IdParam, body: MessageCreate, me: Me,
                       app: AppDep) -> Response:
    return await _send(app, me.id, conversation_id, body)


def hot_routes(app: App) -> dict[Callable[..., Any], HotHandler]:
    """``send_message`` as a hot route (core/http.HotRoutes): a bearer token and a valid
    JSON body are answered here; anything else goes on to the route above."""
    async def send(params: dict[str, str], scope: Scope, body: bytes) -> Response | None:
        headers = Headers(scope=scope)
        token = bearer_token(headers)
        conversation_id = params["conversation_id"]
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if token is None or media_type != "application/json" or len(conversation_id) > 64:
            return None
        try:
            message = MessageCreate.model_validate_json(body)
        except ValidationError:
            return None
        account_id = await accounts_service.account_id_of(app, token)
        return await _send(app, account_id, conversation_id, message)

    return {send_message: send}


@router.post("/conversations", response_model=ConversationOut, status_code=201,
             responses={200: {"model": ConversationOut, "description": "already existed"},
                        **errors(400, 401, 403, 404, 413, 422)}, tags=["conversations"])
async def start_conversation(body: ConversationStart, me: Me, app: AppDep) -> Response:
    view, created = await service.start(app, me.id, body.with_, body.as_)
    return _json(_conversation(view), 201 if created else 200)


@router.get("/conversations", response_model=ConversationPage, responses=errors(400, 401, 404),
            tags=["conversations"])
async def list_conversations(
    me: Me, app: AppDep,
    folder: Folder = "inbox",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    as_: Annotated[str | None, Query(alias="as", max_length=64,
                                     description="a brand's handle: its conversations")] = None,
) -> ConversationPage:
    items, next_cursor = await service.list_page(app, me.id, as_, folder, limit, cursor)
    return ConversationPage(items=[_conversation(v) for v in items], next_cursor=next_cursor)


@router.get("/unread", response_model=UnreadOut, responses=errors(401), tags=["conversations"])
async def unread(me: Me, app: AppDep) -> UnreadOut:
    return UnreadOut.model_validate({"accounts": await service.unread_counts(app, me.id)})


@router.get("/conversations/{conversation_id}", response_model=ConversationOut,
            responses=errors(401, 404), tags=["conversations"])
async def get_conversation(conversation_id: IdParam, me: Me, app: AppDep) -> ConversationOut:
    return _conversation(await service.get(app, me.id, conversation_id))


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut,
              responses=errors(400, 401, 404, 413, 422), tags=["conversations"])
async def patch_conversation(conversation_id: IdParam, body: ConversationPatch, me: Me,
                             app: AppDep) -> ConversationOut:
    flags = body.model_dump(exclude_none=True)
    return _conversation(await service.update_flags(app, me.id, conversation_id, flags))


@router.post("/conversations/{conversation_id}/accept", response_model=ConversationOut,
             responses=errors(401, 404, 409), tags=["requests"])
async def accept(conversation_id: IdParam, me: Me, app: AppDep) -> ConversationOut:
    return _conversation(await service.accept(app, me.id, conversation_id))


@router.post("/conversations/{conversation_id}/decline", response_model=ConversationOut,
             responses=errors(401, 404, 409), tags=["requests"])
async def decline(conversation_id: IdParam, me: Me, app: AppDep) -> ConversationOut:
    return _conversation(await service.decline(app, me.id, conversation_id))


@router.post("/conversations/{conversation_id}/read", response_model=ConversationOut,
             responses=errors(400, 401, 404, 413, 422), tags=["conversations"])
async def read(conversation_id: IdParam, body: ReadMark, me: Me, app: AppDep) -> ConversationOut:
    return _conversation(await service.mark_read(app, me.id, conversation_id, body.message_id))


@router.post("/conversations/{conversation_id}/report", response_model=ReportOut,
             status_code=201, responses=errors(400, 401, 404, 413, 422), tags=["conversations"])
async def report(conversation_id: IdParam, body: ReportCreate, me: Me, app: AppDep) -> ReportOut:
    report_id = await service.report(app, me.id, conversation_id, body.reason, body.message_id)
    return ReportOut(id=report_id)


@router.post("/conversations/{conversation_id}/typing", status_code=204,
             responses=errors(401, 404), tags=["conversations"])
async def typing(conversation_id: IdParam, me: Me, app: AppDep) -> Response:
    await service.typing(app, me.id, conversation_id)
    return Response(status_code=204)


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage,
            responses=errors(401, 404, 422), tags=["messages"])
async def list_messages(
    conversation_id: IdParam, me: Me, app: AppDep,
    before: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MessagePage:
    items, more = await service.list_messages(app, me.id, conversation_id, before, after, limit)
    return MessagePage.model_validate({"items": items, "has_more": more})


@router.patch("/messages/{message_id}", response_model=MessageOut,
              responses=errors(400, 401, 403, 404, 409, 413, 422), tags=["messages"])
async def edit_message(message_id: IdParam, body: MessageEdit, me: Me, app: AppDep) -> MessageOut:
    return MessageOut.model_validate(await service.edit(app, me.id, message_id, body.text))


@router.delete("/messages/{message_id}", status_code=204, responses=errors(401, 403, 404),
               tags=["messages"])
async def unsend_message(message_id: IdParam, me: Me, app: AppDep) -> Response:
    await service.unsend(app, me.id, message_id)
    return Response(status_code=204)


@router.put("/messages/{message_id}/reactions/{emoji}", status_code=204,
            responses=errors(401, 404, 409, 422), tags=["messages"])
async def add_reaction(message_id: IdParam, emoji: EmojiParam, me: Me, app: AppDep) -> Response:
    await service.react(app, me.id, message_id, emoji, True)
    return Response(status_code=204)


@router.delete("/messages/{message_id}/reactions/{emoji}", status_code=204,
               responses=errors(401, 404, 409, 422), tags=["messages"])
async def remove_reaction(message_id: IdParam, emoji: EmojiParam, me: Me,
                          app: AppDep) -> Response:
    await service.react(app, me.id, message_id, emoji, False)
    return Response(status_code=204)
