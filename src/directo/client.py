"""The Python SDK: every API call, and an event stream that resumes from its cursor.

    async with AsyncDirecto("http://127.0.0.1:8000") as ana:
        await ana.login("ana", "correct horse battery")
        conversation = await ana.start_conversation("ben")
        await ana.send(conversation["id"], "hola")
        async for event in ana.stream():
            ...
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


class DirectoAPIError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class AsyncDirecto:
    def __init__(self, base_url: str, token: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 70.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.cursor: str | None = None
        self.account: dict[str, Any] | None = None
        self.http = httpx.AsyncClient(base_url=self.base_url, transport=transport,
                                      timeout=timeout)

    async def __aenter__(self) -> AsyncDirecto:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    # -- transport ------------------------------------------------------------------------------

    async def request(self, method: str, path: str, json_body: Any = None,
                      params: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        params = {k: v for k, v in (params or {}).items() if v is not None}
        response = await self.http.request(method, "/api/v1" + path, json=json_body,
                                           params=params, headers=headers)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", response.text[:200]
            raise DirectoAPIError(response.status_code, code, message)
        return response

    async def _json(self, method: str, path: str, json_body: Any = None,
                    params: dict[str, Any] | None = None) -> Any:
        response = await self.request(method, path, json_body, params)
        return response.json() if response.content else None

    # -- accounts and sessions ------------------------------------------------------------------

    async def create_account(self, handle: str, password: str, display_name: str,
                             kind: str = "person") -> dict[str, Any]:
        return await self._json("POST", "/accounts", {"handle": handle, "password": password,
                                                      "display_name": display_name,
                                                      "kind": kind})

    async def login(self, handle: str, password: str) -> dict[str, Any]:
        session = await self._json("POST", "/sessions", {"handle": handle, "password": password})
        self.token, self.account = session["token"], session["account"]
        return session

    async def signup(self, handle: str, password: str, display_name: str,
                     kind: str = "person") -> dict[str, Any]:
        await self.create_account(handle, password, display_name, kind)
        return await self.login(handle, password)

    async def logout(self) -> None:
        await self._json("DELETE", "/sessions/current")
        self.token = None

    async def me(self) -> dict[str, Any]:
        return await self._json("GET", "/me")

    async def update_me(self, **changes: Any) -> dict[str, Any]:
        return await self._json("PATCH", "/me", changes)

    async def erase_account(self, password: str) -> None:
        """Erase this account for good; its conversations' texts become unreadable."""
        await self._json("DELETE", "/me", {"password": password})
        self.token, self.account = None, None

    async def follow(self, handle: str) -> None:
        await self._json("PUT", f"/me/following/{quote(handle)}")

    async def unfollow(self, handle: str) -> None:
        await self._json("DELETE", f"/me/following/{quote(handle)}")

    async def block(self, handle: str) -> None:
        await self._json("PUT", f"/me/blocked/{quote(handle)}")

    async def unblock(self, handle: str) -> None:
        await self._json("DELETE", f"/me/blocked/{quote(handle)}")

    async def add_member(self, brand: str, member: str, role: str = "agent") -> None:
        await self._json("PUT", f"/brands/{quote(brand)}/members/{quote(member)}",
                         {"role": role})

    async def remove_member(self, brand: str, member: str) -> None:
        await self._json("DELETE", f"/brands/{quote(brand)}/members/{quote(member)}")

    async def members(self, brand: str) -> list[dict[str, Any]]:
        return (await self._json("GET", f"/brands/{quote(brand)}/members"))["items"]

    # -- conversations -------------------------------------------------------------------------

    async def start_conversation(self, handle: str, as_brand: str | None = None,
                                 ) -> dict[str, Any]:
        body: dict[str, Any] = {"with": handle}
        if as_brand is not None:
            body["as"] = as_brand
        return await self._json("POST", "/conversations", body)

    async def conversations(self, folder: str = "inbox", limit: int = 20,
                            cursor: str | None = None,
                            as_brand: str | None = None) -> dict[str, Any]:
        return await self._json("GET", "/conversations", params={
            "folder": folder, "limit": limit, "cursor": cursor, "as": as_brand})

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/conversations/{conversation_id}")

    async def update_conversation(self, conversation_id: str, **flags: bool) -> dict[str, Any]:
        return await self._json("PATCH", f"/conversations/{conversation_id}", flags)

    async def accept(self, conversation_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/conversations/{conversation_id}/accept")

    async def decline(self, conversation_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/conversations/{conversation_id}/decline")

    async def mark_read(self, conversation_id: str, message_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/conversations/{conversation_id}/read",
                                {"message_id": message_id})

    async def report(self, conversation_id: str, reason: str,
                     message_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason}
        if message_id is not None:
            body["message_id"] = message_id
        return await self._json("POST", f"/conversations/{conversation_id}/report", body)

    async def typing(self, conversation_id: str) -> None:
        await self._json("POST", f"/conversations/{conversation_id}/typing")

    async def unread(self) -> dict[str, Any]:
        return (await self._json("GET", "/unread"))["accounts"]

    # -- messages ------------------------------------------------------------------------------

    async def send(self, conversation_id: str, text: str, client_id: str | None = None,
                   reply_to: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"client_id": client_id or uuid.uuid4().hex, "text": text}
        if reply_to is not None:
            body["reply_to"] = reply_to
        return await self._json("POST", f"/conversations/{conversation_id}/messages", body)

    async def messages(self, conversation_id: str, before: str | None = None,
                       after: str | None = None, limit: int = 50) -> dict[str, Any]:
        return await self._json("GET", f"/conversations/{conversation_id}/messages",
                                params={"before": before, "after": after, "limit": limit})

    async def edit(self, message_id: str, text: str) -> dict[str, Any]:
        return await self._json("PATCH", f"/messages/{message_id}", {"text": text})

    async def unsend(self, message_id: str) -> None:
        await self._json("DELETE", f"/messages/{message_id}")

    async def react(self, message_id: str, emoji: str) -> None:
        await self._json("PUT", f"/messages/{message_id}/reactions/{quote(emoji)}")

    async def unreact(self, message_id: str, emoji: str) -> None:
        await self._json("DELETE", f"/messages/{message_id}/reactions/{quote(emoji)}")

    # -- events --------------------------------------------------------------------------------

    async def poll(self, after: str | None = None, timeout: float = 25) -> dict[str, Any]:
        """One long-poll; remembers the cursor it returns."""
        page = await self._json("GET", "/events", params={
            "after": after if after is not None else self.cursor, "timeout": timeout})
        self.cursor = page["cursor"]
        return page

    async def stream(self, after: str | None = None, reconnect_delay: float = 0.2,
                     ) -> AsyncIterator[dict[str, Any]]:
        """Every event after ``after`` (default: the remembered cursor), then live ones,
        forever; on a dropped connection it reconnects with the last cursor it saw, so the
        caller sees each event once and in order."""
        if after is not None:
            self.cursor = after
        url = self.base_url.replace("http", "ws", 1) + "/api/v1/stream"
        delay = reconnect_delay
        while True:
            query = f"?after={self.cursor}" if self.cursor else ""
            try:
                async with websockets.connect(
                        url + query, additional_headers={"Authorization": f"Bearer {self.token}"},
                        open_timeout=10, max_size=2**24) as ws:
                    delay = reconnect_delay
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("cursor"):
                            self.cursor = frame["cursor"]
                        yield frame
            except (ConnectionClosed, OSError, InvalidStatus, TimeoutError) as dropped:
                # a refusal (bad token or cursor) arrives as a 44xx close: retrying cannot help
                close = dropped.rcvd if isinstance(dropped, ConnectionClosed) else None
                if close is not None and close.code in (4400, 4401):
                    raise DirectoAPIError(close.code - 4000, close.reason or "closed",
                                          "stream refused") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
