"""Accounts, sessions, follows, blocks and privacy settings through the API."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Connection, func, select

from directo.accounts.store import sessions
from directo.client import DirectoAPIError
from tests.conftest import PASSWORD
from tests.helpers import friends


async def test_signup_login_me_logout(client) -> None:
    ana = client()
    created = await ana.create_account("Ana.Costa", PASSWORD, "  Ana   Costa ", "creator")
    assert created["handle"] == "ana.costa"
    assert created["display_name"] == "Ana Costa"
    assert "password" not in str(created) and "password_hash" not in created
    session = await ana.login("ANA.costa", PASSWORD)
    assert session["account"]["kind"] == "creator"
    assert (await ana.me())["dm_policy"] == "everyone"
    await ana.logout()
    ana.token = session["token"]
    with pytest.raises(DirectoAPIError) as refused:
        await ana.me()
    assert refused.value.status == 401


@pytest.mark.parametrize(("handle", "password", "code"), [
    ("ab", PASSWORD, "invalid_handle"),
    ("has space", PASSWORD, "invalid_handle"),
    ("x" * 31, PASSWORD, "invalid_handle"),
    ("ñandú", PASSWORD, "invalid_handle"),
    ("valid_one", "short", "weak_password"),
])
async def test_signup_rejects_bad_values(client, handle, password, code) -> None:
    with pytest.raises(DirectoAPIError) as refused:
        await client().create_account(handle, password, "Name")
    assert (refused.value.status, refused.value.code) == (422, code)


async def test_handles_are_unique_case_insensitively(client) -> None:
    await client().create_account("ana", PASSWORD, "Ana")
    with pytest.raises(DirectoAPIError) as refused:
        await client().create_account("ANA", PASSWORD, "Other Ana")
    assert (refused.value.status, refused.value.code) == (409, "handle_taken")


async def test_wrong_password_then_rate_limited(client) -> None:
    await client().create_account("ana", PASSWORD, "Ana")
    attacker = client()
    for _ in range(5):
        with pytest.raises(DirectoAPIError) as wrong:
            await attacker.login("ana", "not the password")
        assert wrong.value.status == 401 and wrong.value.code == "invalid_credentials"
    response = await attacker.http.post("/api/v1/sessions",
                                        json={"handle": "ana", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


async def test_unknown_handle_and_wrong_password_answer_alike(client) -> None:
    await client().create_account("ana", PASSWORD, "Ana")
    answers = []
    for handle in ("ana", "nobody_here"):
        with pytest.raises(DirectoAPIError) as refused:
            await client().login(handle, "wrong password!")
        answers.append((refused.value.status, refused.value.code, refused.value.message))
    assert answers[0] == answers[1]


async def test_each_session_is_its_own_device(signup, client) -> None:
    ana = await signup("ana")
    phone = client()
    await phone.login("ana", PASSWORD)
    assert phone.token != ana.token
    await ana.logout()
    assert (await phone.me())["handle"] == "ana"


async def test_a_token_logged_out_can_send_no_more_at_once(signup, client) -> None:
    """The send path remembers the tokens it has resolved (one SQLite process): logging out
    must forget the token there too, and only that one."""
    ana, _ben, conversation_id = await friends(signup)
    phone = client()
    await phone.login("ana", PASSWORD)
    await ana.send(conversation_id, "from the laptop")
    await phone.send(conversation_id, "from the phone")
    token = ana.token
    await ana.logout()
    ana.token = token
    with pytest.raises(DirectoAPIError) as refused:
        await ana.send(conversation_id, "after logging out")
    assert refused.value.status == 401
    assert (await phone.send(conversation_id, "still here"))["text"] == "still here"
    texts = [m["text"] for m in (await phone.messages(conversation_id))["items"]]
    assert "after logging out" not in texts


def _days_pass(monkeypatch: pytest.MonkeyPatch, days: int) -> None:
    """The clock by which sessions are judged, ``days`` ahead."""
    import directo.accounts.service as service

    real_utcnow, ahead = service.utcnow, timedelta(days=days)
    monkeypatch.setattr(service, "utcnow", lambda: real_utcnow() + ahead)
    monkeypatch.setattr(service, "time", SimpleNamespace(
        time=lambda: time.time() + ahead.total_seconds()))


async def test_a_session_past_its_lifetime_is_refused(app, signup,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Including by the send route, which remembers the tokens it has resolved."""
    ana, _ben, conversation_id = await friends(signup)
    await ana.send(conversation_id, "within the lifetime")
    _days_pass(monkeypatch, app.settings.session_days - 1)
    assert (await ana.send(conversation_id, "a day before the end"))["text"]
    _days_pass(monkeypatch, app.settings.session_days + 1)
    for attempt in (ana.send(conversation_id, "too late"), ana.me()):
        with pytest.raises(DirectoAPIError) as refused:
            await attempt
        assert refused.value.status == 401
        assert "expired" in refused.value.message


async def test_housekeeping_deletes_sessions_past_their_lifetime(
        app, signup, monkeypatch: pytest.MonkeyPatch) -> None:
    from directo.accounts.service import end_expired_sessions

    await signup("ana")
    await signup("ben")

    def count(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(sessions)).scalar_one())

    await end_expired_sessions(app)
    assert await app.db.read(count) == 2  # both still within their lifetime
    _days_pass(monkeypatch, app.settings.session_days + 1)
    await end_expired_sessions(app)
    assert await app.db.read(count) == 0


async def test_update_me(signup) -> None:
    ana = await signup("ana")
    me = await ana.update_me(display_name="Ana C.", dm_policy="following")
    assert (me["display_name"], me["dm_policy"]) == ("Ana C.", "following")
    with pytest.raises(DirectoAPIError) as refused:
        await ana.update_me(dm_policy="friends")
    assert refused.value.status == 422
    assert (await ana.me())["dm_policy"] == "following"


async def test_follow_block_lists(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ana.follow("ben")
    await ana.follow("ben")  # idempotent
    await ben.follow("ana")
    following = await ana._json("GET", "/me/following")
    assert [a["handle"] for a in following["items"]] == ["ben"]
    await ana.block("ben")
    assert (await ana._json("GET", "/me/following"))["items"] == []
    assert (await ben._json("GET", "/me/following"))["items"] == []
    assert [a["handle"] for a in (await ana._json("GET", "/me/blocked"))["items"]] == ["ben"]
    await ana.unblock("ben")
    assert (await ana._json("GET", "/me/blocked"))["items"] == []
    with pytest.raises(DirectoAPIError) as missing:
        await ana.follow("nobody")
    assert missing.value.status == 404
    with pytest.raises(DirectoAPIError) as self_follow:
        await ana.follow("ana")
    assert self_follow.value.status == 422
