"""Send rate limit: a flood is refused with 429 and Retry-After and stores nothing; retries
of stored messages still get their answer."""

from __future__ import annotations

import httpx

from directo.app import App
from directo.client import AsyncDirecto
from tests.conftest import PASSWORD


async def test_sending_too_fast_is_refused_and_stores_nothing(settings_factory) -> None:
    app = App(settings_factory(sends_per_minute=3))
    await app.start()
    asgi = app.asgi()
    clients = [AsyncDirecto("http://directo.test", transport=httpx.ASGITransport(app=asgi))
               for _ in range(2)]
    try:
        ana, ben = clients
        await ana.signup("ana", PASSWORD, "Ana")
        await ben.signup("ben", PASSWORD, "Ben")
        await ben.follow("ana")
        conversation = await ana.start_conversation("ben")
        sent = [await ana.send(conversation["id"], f"message {n}", client_id=f"c{n}")
                for n in range(3)]
        response = await ana.http.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"client_id": "one-too-many", "text": "flood"},
            headers={"Authorization": f"Bearer {ana.token}"})
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        texts = [m["text"] for m in (await ben.messages(conversation["id"]))["items"]]
        assert texts == ["message 0", "message 1", "message 2"]
        retried = await ana.request("POST", f"/conversations/{conversation['id']}/messages",
                                    {"client_id": "c0", "text": "message 0"})
        assert retried.status_code == 200 and retried.json()["id"] == sent[0]["id"], \
            "a retry of a stored message is answered even when the budget is spent"
        await ben.send(conversation["id"], "ben has his own budget")
    finally:
        for sdk in clients:
            await sdk.close()
        await app.stop()
