"""Request and response models for conversations and messages."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from directo.accounts.schemas import AccountOut, Strict

Folder = Literal["inbox", "requests", "archived"]


class ConversationStart(Strict):
    with_: str = Field(alias="with", max_length=64, description="the other account's handle")
    as_: str | None = Field(default=None, alias="as", max_length=64,
                            description="a brand's handle, to start it as that brand")


class ConversationPatch(Strict):
    archived: bool | None = None
    muted: bool | None = None
    pinned: bool | None = None


class ReadMark(Strict):
    message_id: str = Field(max_length=64)


class ReportCreate(Strict):
    reason: str = Field(max_length=4000)
    message_id: str | None = Field(default=None, max_length=64)


class MessageCreate(Strict):
    client_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                           description="chosen by the client; a retry with it is answered with "
                                       "the original message")
    text: str = Field(max_length=200_000)
    reply_to: str | None = Field(default=None, max_length=64)


class MessageEdit(Strict):
    text: str = Field(max_length=200_000)


class ReplyOut(BaseModel):
    id: str
    sender: AccountOut
    text: str | None
    deleted: bool


class ReactionOut(BaseModel):
    emoji: str
    by: list[str] = Field(description="handles of the accounts that reacted")


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    client_id: str | None = Field(description="only shown to the sending side")
    sender: AccountOut
    author: AccountOut | None = Field(description="the brand member who wrote it, if any")
    sender_label: str = Field(description='what to show as the sender, e.g. "Ana · Acme"')
    text: str | None = Field(description="null once unsent")
    reply_to: ReplyOut | None
    reactions: list[ReactionOut]
    created_at: str
    edited_at: str | None
    deleted_at: str | None


class ConversationOut(BaseModel):
    id: str
    with_: AccountOut = Field(alias="with")
    as_: AccountOut = Field(alias="as", description="the side you see it as (you or a brand)")
    folder: Folder | None = Field(description="null once declined")
    state: Literal["none", "request", "accepted", "declined"]
    archived: bool
    muted: bool
    pinned: bool
    unread_count: int
    last_message: MessageOut | None
    last_activity_at: str | None
    peer_last_read_message_id: str | None = Field(description="read receipt: the last message "
                                                              "the other side has seen")
    awaiting_acceptance: bool = Field(description="the other side has not accepted yet")
    created_at: str

    model_config = {"populate_by_name": True}


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[MessageOut] = Field(description="oldest first")
    has_more: bool = Field(description="more messages lie beyond this page in the direction "
                                       "asked (older for before, newer for after)")


class ReportOut(BaseModel):
    id: str


class UnreadCounts(BaseModel):
    inbox: int
    requests: int
    archived: int


class UnreadOut(BaseModel):
    accounts: dict[str, UnreadCounts] = Field(description="by handle: you and your brands")
