"""Pure decisions: who may message whom, what a message text is, when an edit is allowed."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import emoji as emoji_lib

from directo.core.errors import DirectoError, Forbidden, Invalid

TEXT_MAX = 10_000
REASON_MAX = 1_000

# a participant's state: "none" (nothing received yet), "request", "accepted", "declined"
State = Literal["none", "request", "accepted", "declined"]


class CannotMessage(Forbidden):
    """The one answer for blocked, declined and not admitted: nobody learns which it was."""

    def __init__(self) -> None:
        super().__init__("cannot_message", "you cannot message this account")


@dataclass(frozen=True, slots=True)
class SendFacts:
    recipient_state: State
    recipient_blocked_sender: bool
    sender_blocked_recipient: bool
    recipient_policy: str
    recipient_follows_sender: bool
    recipient_is_brand: bool
    sent_while_pending: int
    request_limit: int


def decide_delivery(f: SendFacts, sending: bool = True) -> Literal["inbox", "request"]:
    """Where a message lands on the recipient's side, or why it may not be sent.

    With ``sending=False`` (opening a conversation) the request limit is not checked.
    """
    if f.recipient_blocked_sender:
        raise CannotMessage()
    if f.sender_blocked_recipient:
        raise Forbidden("you_blocked", "unblock this account before messaging it")
    if f.recipient_state == "accepted":
        return "inbox"
    if f.recipient_state == "declined":
        raise CannotMessage()
    if f.recipient_policy == "nobody":
        raise CannotMessage()
    if f.recipient_policy == "following" and not f.recipient_follows_sender:
        raise CannotMessage()
    if f.recipient_is_brand or f.recipient_follows_sender:
        return "inbox"
    if sending and f.sent_while_pending >= f.request_limit:
        raise Forbidden("request_pending",
                        f"you can send {f.request_limit} messages until they accept your request")
    return "request"


# Unicode categories Cc (C0 and C1 controls) and Cs (lone surrogates), except LF and TAB:
# one regular expression instead of a category lookup per character on the send path.
_DROPPED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def normalise_text(text: str) -> str:
    """NFC; CR LF and CR become LF; control characters other than LF and TAB are dropped."""
    text = _DROPPED.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    # NFC last: a dropped control character may have separated a letter from its accent
    text = unicodedata.normalize("NFC", text)
    if not text.strip():
        raise Invalid("empty_message", "a message needs at least one visible character")
    if len(text) > TEXT_MAX:
        raise DirectoError("message_too_long",
                           f"a message is at most {TEXT_MAX} characters", status=413)
    return text


def normalise_reason(reason: str) -> str:
    cleaned = unicodedata.normalize("NFC", reason).strip()
    cleaned = "".join(ch for ch in cleaned if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    if not 1 <= len(cleaned) <= REASON_MAX:
        raise Invalid("invalid_reason", f"a reason is 1-{REASON_MAX} characters")
    return cleaned


def check_emoji(value: str) -> str:
    """One emoji, in its fully-qualified form: "❤" and "❤️" are the same reaction."""
    value = unicodedata.normalize("NFC", value)
    if len(value) > 16 or not emoji_lib.is_emoji(value):
        raise Invalid("invalid_emoji", "a reaction is a single emoji")
    return emoji_lib.emojize(emoji_lib.demojize(value))


def check_edit_window(created_at: datetime, now: datetime, window_seconds: int) -> None:
    if now - created_at > timedelta(seconds=window_seconds):
        window = (f"{window_seconds // 60} minutes" if window_seconds % 60 == 0
                  else f"{window_seconds} seconds")
        raise Forbidden("edit_window_closed", f"messages can be edited for {window}")


def folder_of(state: str, archived: bool) -> str | None:
    if state == "request":
        return "requests"
    if state == "accepted":
        return "archived" if archived else "inbox"
    return None
