"""Invariant 1, walked over every route: to anyone outside a conversation it does not exist.

The route table below is checked against ``app.api.routes``, so a new route fails this test
until someone decides how an outsider probes it. Outsiders are a stranger, someone a
participant blocked, and a former member of the brand; targets are a person-to-person
conversation and a brand's conversation with a customer, each with a message, a reply and a
reaction. Routes about a conversation, a message or a brand must answer 404; routes about
the caller may answer, but nothing in any answer may mention the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI

from directo.accounts.cookies import SESSION_COOKIE
from directo.app import App
from directo.client import AsyncDirecto
from directo.core.http import HotRoutes
from directo.events.service import encode_cursor
from tests.conftest import PASSWORD
from tests.helpers import Signup, database_snapshot


@dataclass(frozen=True)
class Probe:
    """How an outsider tries a route. ``path`` and ``body`` strings are formatted with the
    target's values: {conversation}, {message}, {side} (a participant the outsider might try
    to act as), {peer} (the other participant), {brand} (the target's brand, or its person)."""

    path: str
    body: Any = None
    about_target: bool = True  # must answer 404; otherwise it answers about the caller
    ends_session: bool = False  # run last, then log the outsider in again
    params: dict[str, str] = field(default_factory=dict)


# ids of nothing: a conversation that exists but is not yours must answer exactly like these
MADE_UP_IDS = {"conversation": "cnv_1m8chqyyrp2cqbkf5qckd", "message": "msg_1m8chqyzpa942n3c4ftr7"}
CONVERSATION = "/api/v1/conversations/{conversation}"
MESSAGE = "/api/v1/messages/{message}"
MINE = {"about_target": False}

PROBES: dict[tuple[str, str], list[Probe]] = {
    # accounts and sessions: about the caller; answers must still say nothing of the target
    ("POST", "/api/v1/accounts"): [Probe("/api/v1/accounts", {}, **MINE)],
    ("POST", "/api/v1/sessions"): [Probe("/api/v1/sessions", {}, **MINE)],
    ("DELETE", "/api/v1/sessions/current"): [Probe("/api/v1/sessions/current", about_target=False,
                                                   ends_session=True)],
    ("GET", "/api/v1/me"): [Probe("/api/v1/me", **MINE)],
    ("PATCH", "/api/v1/me"): [Probe("/api/v1/me", {}, **MINE)],
    ("DELETE", "/api/v1/me"): [Probe("/api/v1/me", {}, **MINE)],
    ("GET", "/api/v1/accounts/{handle}"): [Probe("/api/v1/accounts/{peer}", **MINE)],
    ("GET", "/api/v1/me/{relation}"): [Probe(f"/api/v1/me/{relation}", **MINE)
                                       for relation in ("following", "followers", "blocked")],
    ("PUT", "/api/v1/me/following/{handle}"): [Probe("/api/v1/me/following/{side}", **MINE)],
    ("DELETE", "/api/v1/me/following/{handle}"): [Probe("/api/v1/me/following/{side}", **MINE)],
    ("PUT", "/api/v1/me/blocked/{handle}"): [Probe("/api/v1/me/blocked/{peer}", **MINE)],
    ("DELETE", "/api/v1/me/blocked/{handle}"): [Probe("/api/v1/me/blocked/{peer}", **MINE)],
    ("GET", "/api/v1/accounts/{handle}/presence"): [Probe("/api/v1/accounts/{side}/presence")],
    # brand teams
    ("GET", "/api/v1/brands/{handle}/members"): [Probe("/api/v1/brands/{brand}/members")],
    ("PUT", "/api/v1/brands/{handle}/members/{member_handle}"): [
        Probe("/api/v1/brands/{brand}/members/{peer}", {"role": "owner"})],
    ("DELETE", "/api/v1/brands/{handle}/members/{member_handle}"): [
        Probe("/api/v1/brands/{brand}/members/{peer}")],
    # conversations
    ("POST", "/api/v1/conversations"): [Probe("/api/v1/conversations",
                                              {"with": "{peer}", "as": "{side}"})],
    ("GET", "/api/v1/conversations"): [
        Probe("/api/v1/conversations", params={"as": "{side}"}),
        *(Probe("/api/v1/conversations", params={"folder": folder}, **MINE)
          for folder in ("inbox", "requests", "archived"))],
    ("GET", "/api/v1/unread"): [Probe("/api/v1/unread", **MINE)],
    ("GET", "/api/v1/conversations/{conversation_id}"): [Probe(CONVERSATION)],
    ("PATCH", "/api/v1/conversations/{conversation_id}"): [
        Probe(CONVERSATION, {"pinned": True, "archived": True})],
    ("POST", "/api/v1/conversations/{conversation_id}/accept"): [Probe(CONVERSATION + "/accept")],
    ("POST", "/api/v1/conversations/{conversation_id}/decline"): [
        Probe(CONVERSATION + "/decline")],
    ("POST", "/api/v1/conversations/{conversation_id}/read"): [
        Probe(CONVERSATION + "/read", {"message_id": "{message}"})],
    ("POST", "/api/v1/conversations/{conversation_id}/report"): [
        Probe(CONVERSATION + "/report", {"reason": "spam", "message_id": "{message}"})],
    ("POST", "/api/v1/conversations/{conversation_id}/typing"): [Probe(CONVERSATION + "/typing")],
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): [
        Probe(CONVERSATION + "/messages",
              {"client_id": "probe", "text": "let me in", "reply_to": "{message}"})],
    ("GET", "/api/v1/conversations/{conversation_id}/messages"): [
        Probe(CONVERSATION + "/messages"),
        Probe(CONVERSATION + "/messages", params={"after": "{message}"})],
    # messages
    ("PATCH", "/api/v1/messages/{message_id}"): [Probe(MESSAGE, {"text": "rewritten"})],
    ("DELETE", "/api/v1/messages/{message_id}"): [Probe(MESSAGE)],
    ("PUT", "/api/v1/messages/{message_id}/reactions/{emoji}"): [
        Probe(MESSAGE + "/reactions/" + quote("👍"))],
    ("DELETE", "/api/v1/messages/{message_id}/reactions/{emoji}"): [
        Probe(MESSAGE + "/reactions/" + quote("❤️"))],
    # events: the caller's own stream, from its very beginning (the WebSocket sends the same
    # frames, rendered by the same code, as this page)
    ("GET", "/api/v1/events"): [Probe("/api/v1/events",
                                      params={"after": encode_cursor(0), "timeout": "0"},
                                      **MINE)],
    ("WEBSOCKET", "/api/v1/stream"): [Probe("/api/v1/events",
                                            params={"after": encode_cursor(0), "timeout": "0"},
                                            **MINE)],
    # the web app (cookie session): a conversation page, and pages about the caller
    ("GET", "/c/{conversation_id}"): [Probe("/c/{conversation}")],
    ("GET", "/"): [Probe("/", params={"as": "{side}"}, **MINE), Probe("/", **MINE)],
    ("GET", "/settings"): [Probe("/settings", **MINE)],
    ("POST", "/settings"): [Probe("/settings", "dm_policy=nobody", **MINE)],
    ("GET", "/login"): [Probe("/login", **MINE)],
    ("POST", "/login"): [Probe("/login", "handle={side}&password=guess", **MINE)],
    ("GET", "/signup"): [Probe("/signup", **MINE)],
    ("POST", "/signup"): [Probe("/signup", "handle={side}&password=guess", **MINE)],
    ("POST", "/logout"): [Probe("/logout", about_target=False, ends_session=True)],
    # operations and documentation
    ("GET", "/healthz"): [Probe("/healthz", **MINE)],
    ("GET", "/metrics"): [Probe("/metrics", **MINE)],
    ("GET", "/openapi.json"): [Probe("/openapi.json", **MINE)],
    ("GET", "/docs"): [Probe("/docs", **MINE)],
    ("MOUNT", "/docs/assets"): [Probe("/docs/assets/{conversation}.js", **MINE)],
    ("MOUNT", "/static"): [Probe("/static/{conversation}.js", **MINE)],
}


def app_routes(api: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, through included routers and mounts."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:  # FastAPI keeps included routers as one route each
                walk(inner.routes)
            elif getattr(route, "methods", None):
                found.update((method, route.path) for method in route.methods
                             if method != "HEAD")
            elif type(route).__name__.endswith("WebSocketRoute"):
                found.add(("WEBSOCKET", route.path))
            else:
                found.add(("MOUNT", route.path))

    walk(api.routes)
    return found


def hot_sockets(served: Any) -> set[tuple[str, str]]:
    """The WebSocket endpoints served in front of FastAPI (core/http.HotRoutes)."""
    while not isinstance(served, HotRoutes):
        served = served.app
    return {("WEBSOCKET", path) for path in served.sockets}


def test_every_route_has_a_probe(app) -> None:
    routes = app_routes(app.api) | hot_sockets(app.asgi())
    assert routes - PROBES.keys() == set(), "add a privacy probe for these routes"
    assert PROBES.keys() - routes == set(), "these probes are for routes that no longer exist"


@dataclass
class Target:
    values: dict[str, str]  # what probe paths and bodies are formatted with
    secrets: list[str]  # nothing an outsider receives may contain any of these
    party_ids: list[str]  # nor, from a route about the target, these


async def _person_to_person(signup: Signup) -> Target:
    ana, ben = await signup("ana"), await signup("ben")
    await ben.follow("ana")
    conversation = (await ana.start_conversation("ben"))["id"]
    first = await ana.send(conversation, "the door code is 4711")
    reply = await ben.send(conversation, "thanks, see you at 8", reply_to=first["id"])
    await ben.react(first["id"], "❤️")
    await ben.mark_read(conversation, first["id"])
    await ana.block("bob")
    return Target(
        values={"conversation": conversation, "message": first["id"], "side": "ana",
                "peer": "ben", "brand": "ana"},
        secrets=[conversation, first["id"], reply["id"], "door code is 4711", "see you at 8"],
        party_ids=[ana.account["id"], ben.account["id"]])  # type: ignore[index]


async def _brand_and_customer(signup: Signup) -> Target:
    """Acme answers a customer; "exa" was on Acme's team and is no longer."""
    acme, agent, customer = await signup("acme", kind="brand"), await signup("agt"), \
        await signup("cus")
    await acme.add_member("acme", "agt", "agent")
    await acme.add_member("acme", "exa", "admin")
    conversation = (await customer.start_conversation("acme"))["id"]
    question = await customer.send(conversation, "order 99812 arrived broken")
    answer = await agent.send(conversation, "refund issued to card ending 0042",
                              reply_to=question["id"])
    await customer.react(answer["id"], "👍")
    await acme.remove_member("acme", "exa")
    await acme.block("bob")
    return Target(
        values={"conversation": conversation, "message": question["id"], "side": "acme",
                "peer": "cus", "brand": "acme"},
        secrets=[conversation, question["id"], answer["id"], "order 99812",
                 "card ending 0042"],
        party_ids=[acme.account["id"], customer.account["id"],  # type: ignore[index]
                   agent.account["id"]])  # type: ignore[index]


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    return value


async def _try(outsider: AsyncDirecto, method: str, probe: Probe,
               values: dict[str, str]) -> httpx.Response:
    body = _fill(probe.body, values)
    path = _fill(probe.path, values)
    request: dict[str, Any] = {"params": _fill(probe.params, values)}
    if path.startswith("/api/"):
        request["headers"] = {"Authorization": f"Bearer {outsider.token}"}
        if body is not None:
            request["json"] = body
    else:
        request["headers"] = {"Cookie": f"{SESSION_COOKIE}={outsider.token}",
                              "Content-Type": "application/x-www-form-urlencoded"}
        if body is not None:
            request["content"] = body
    http_method = "GET" if method in ("WEBSOCKET", "MOUNT") else method
    outsider.http.cookies.clear()  # whatever a page set must not carry over to the next probe
    return await outsider.http.request(http_method, path, **request)


async def test_outsiders_learn_nothing_from_any_route(signup, app) -> None:
    stranger, blocked, former_member = await signup("sam"), await signup("bob"), \
        await signup("exa")
    targets = [await _person_to_person(signup), await _brand_and_customer(signup)]
    before = _conversation_state(app)
    outsiders = {"sam": stranger, "bob": blocked, "exa": former_member}
    ordered = sorted(PROBES.items(), key=lambda item: any(p.ends_session for p in item[1]))
    failures = []
    for target in targets:
        for handle, outsider in outsiders.items():
            for (method, route), probes in ordered:
                for probe in probes:
                    response = await _try(outsider, method, probe, target.values)
                    text = response.text
                    leaked = [s for s in target.secrets if s in text]
                    if probe.about_target:
                        leaked += [s for s in target.party_ids if s in text]
                        if response.status_code != 404:
                            failures.append((handle, method, route, response.status_code,
                                             text[:200]))
                    elif response.status_code >= 500:
                        failures.append((handle, method, route, response.status_code, text[:200]))
                    if leaked:
                        failures.append((handle, method, route, "leaked", leaked))
                    if "{conversation}" in probe.path or "{message}" in probe.path:
                        made_up = await _try(outsider, method, probe, {**target.values,
                                                                       **MADE_UP_IDS})
                        if (made_up.status_code, made_up.text) != (response.status_code, text):
                            failures.append((handle, method, route, "differs from made-up id",
                                             text[:200], made_up.text[:200]))
                    if probe.ends_session:
                        await outsider.login(handle, PASSWORD)
    assert failures == []
    assert _conversation_state(app) == before  # and they changed nothing


def _conversation_state(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Everything but the outsiders' own sessions, follows and blocks."""
    return {name: rows for name, rows in database_snapshot(app).items()
            if name not in ("sessions", "follows", "blocks")}
