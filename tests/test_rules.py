"""The pure decisions, without I/O: who may message whom, what a text is, roles."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directo.accounts import rules as account_rules
from directo.brands import rules as brand_rules
from directo.conversations import rules
from directo.core.errors import DirectoError, Forbidden, Invalid

STRANGER = rules.SendFacts(
    recipient_state="none", recipient_blocked_sender=False, sender_blocked_recipient=False,
    recipient_policy="everyone", recipient_follows_sender=False, recipient_is_brand=False,
    sent_while_pending=0, request_limit=3)


def code_of(facts: rules.SendFacts) -> str:
    try:
        return rules.decide_delivery(facts)
    except DirectoError as error:
        return error.code


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, "request"),
    ({"recipient_follows_sender": True}, "inbox"),
    ({"recipient_is_brand": True}, "inbox"),
    ({"recipient_state": "accepted"}, "inbox"),
    ({"recipient_state": "request", "sent_while_pending": 2}, "request"),
    ({"recipient_state": "request", "sent_while_pending": 3}, "request_pending"),
    ({"recipient_state": "declined"}, "cannot_message"),
    ({"recipient_blocked_sender": True, "recipient_state": "accepted"}, "cannot_message"),
    ({"sender_blocked_recipient": True}, "you_blocked"),
    ({"recipient_policy": "nobody"}, "cannot_message"),
    ({"recipient_policy": "nobody", "recipient_is_brand": True}, "cannot_message"),
    ({"recipient_policy": "following"}, "cannot_message"),
    ({"recipient_policy": "following", "recipient_follows_sender": True}, "inbox"),
    ({"recipient_policy": "nobody", "recipient_state": "accepted"}, "inbox"),
])
def test_decide_delivery(changes: dict[str, object], expected: str) -> None:
    assert code_of(replace(STRANGER, **changes)) == expected  # type: ignore[arg-type]


def test_opening_a_conversation_ignores_the_request_limit() -> None:
    facts = replace(STRANGER, sent_while_pending=3)
    assert rules.decide_delivery(facts, sending=False) == "request"


def test_every_refusal_that_must_not_leak_is_one_answer() -> None:
    refusals = [replace(STRANGER, recipient_blocked_sender=True),
                replace(STRANGER, recipient_state="declined"),
                replace(STRANGER, recipient_policy="nobody"),
                replace(STRANGER, recipient_policy="following")]
    answers = set()
    for facts in refusals:
        with pytest.raises(Forbidden) as refused:
            rules.decide_delivery(facts)
        answers.add((refused.value.status, refused.value.code, refused.value.message))
    assert len(answers) == 1


@given(st.text(max_size=200))
def test_normalised_text_keeps_only_what_may_be_shown(text: str) -> None:
    try:
        cleaned = rules.normalise_text(text)
    except Invalid:
        visible = [ch for ch in text if ch in "\n\t"
                   or unicodedata.category(ch) not in ("Cc", "Cs")]
        assert not "".join(visible).strip()
        return
    assert cleaned.strip()
    assert "\r" not in cleaned
    assert unicodedata.is_normalized("NFC", cleaned)
    assert all(ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs") for ch in cleaned)


def test_text_limits_and_line_endings() -> None:
    assert rules.normalise_text("a\r\nb\rc\x00d\te\u0085") == "a\nb\ncd\te"
    assert rules.normalise_text("Cafe\u0301") == "Café"
    assert rules.normalise_text("Cafe\x00\u0301") == "Café"
    assert len(rules.normalise_text("x" * rules.TEXT_MAX)) == rules.TEXT_MAX
    with pytest.raises(DirectoError) as too_long:
        rules.normalise_text("x" * (rules.TEXT_MAX + 1))
    assert (too_long.value.status, too_long.value.code) == (413, "message_too_long")
    with pytest.raises(Invalid):
        rules.normalise_text(" \n\t\x07 ")


def test_edit_window() -> None:
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    rules.check_edit_window(sent, sent + timedelta(minutes=15), 900)
    with pytest.raises(Forbidden) as closed:
        rules.check_edit_window(sent, sent + timedelta(minutes=15, seconds=1), 900)
    assert closed.value.code == "edit_window_closed"


@pytest.mark.parametrize("value", ["👍", "❤️", "🇪🇸", "👩‍💻"])
def test_emoji_accepted(value: str) -> None:
    assert rules.check_emoji(value) == value


@pytest.mark.parametrize("value", ["a", "👍👍", ":)", "", "<b>"])
def test_non_emoji_refused(value: str) -> None:
    with pytest.raises(Invalid):
        rules.check_emoji(value)


@pytest.mark.parametrize(("state", "archived", "folder"), [
    ("request", False, "requests"), ("accepted", False, "inbox"),
    ("accepted", True, "archived"), ("declined", False, None), ("none", False, None)])
def test_folder_of(state: str, archived: bool, folder: str | None) -> None:
    assert rules.folder_of(state, archived) == folder


def test_handles_and_names() -> None:
    assert account_rules.normalise_handle("  Ana.Costa ") == "ana.costa"
    for bad in ("ab", "a" * 31, "ana costa", "ana-costa", "añá"):
        with pytest.raises(Invalid):
            account_rules.normalise_handle(bad)
    assert account_rules.normalise_display_name(" Ana \x00 Costa ") == "Ana Costa"
    with pytest.raises(Invalid):
        account_rules.check_password("short")


@pytest.mark.parametrize(("actor", "old", "new", "allowed"), [
    ("owner", "owner", None, True), ("owner", None, "owner", True),
    ("admin", None, "agent", True), ("admin", "agent", "admin", True),
    ("admin", "owner", None, False), ("admin", None, "owner", False),
    ("agent", None, "agent", False),
])
def test_who_manages_a_brand_team(actor: str, old: str | None, new: str | None,
                                  allowed: bool) -> None:
    if allowed:
        brand_rules.check_may_manage(actor, old, new)
    else:
        with pytest.raises(Forbidden):
            brand_rules.check_may_manage(actor, old, new)
