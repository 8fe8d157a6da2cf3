"""Invariant 6: bad input gets a clear 4xx in the error shape and changes nothing; and a
Schemathesis run over the OpenAPI document finds no 5xx and no undocumented answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup
from starlette.testclient import TestClient

from directo.app import App
from directo.config import Settings
from directo.core import cursors
from tests.conftest import PASSWORD
from tests.helpers import database_snapshot, friends

HUGE = 300 * 1024  # over the default 256 KiB body limit


@dataclass(frozen=True)
class Bad:
    """One bad request: where it goes, what it carries, and the answer it must get."""

    method: str
    path: str  # formatted with {conversation} and {message}
    status: int
    code: str | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    token: str | None = "mine"  # "mine": the caller's real token


MESSAGES = "/conversations/{conversation}/messages"
JSON = {"Content-Type": "application/json"}
REQUESTS = [
    # wrong types
    Bad("POST", MESSAGES, 422, "invalid_request", json={"client_id": 5, "text": "hi"}),
    Bad("POST", MESSAGES, 422, "invalid_request", json={"client_id": "a", "text": ["hi"]}),
    Bad("POST", MESSAGES, 422, "invalid_request", json={"client_id": "a", "text": None}),
    Bad("POST", MESSAGES, 422, "invalid_request", json=["client_id", "text"]),
    Bad("POST", MESSAGES, 422, "invalid_request", json="hi"),
    Bad("PATCH", "/conversations/{conversation}", 422, "invalid_request",
        json={"pinned": "maybe"}),
    Bad("POST", "/conversations/{conversation}/read", 422, "invalid_request",
        json={"message_id": {"$ne": ""}}),
    Bad("PATCH", "/me", 422, "invalid_request", json={"dm_policy": 3}),
    Bad("GET", MESSAGES, 422, "invalid_request", params={"limit": "ten"}),
    Bad("GET", MESSAGES, 422, "invalid_request", params={"limit": "0"}),
    Bad("GET", MESSAGES, 422, "invalid_request", params={"limit": "100000"}),
    Bad("GET", "/events", 422, "invalid_request", params={"timeout": "soon"}),
    Bad("GET", "/events", 422, "invalid_request", params={"timeout": "-1"}),
    Bad("GET", "/conversations", 422, "invalid_request", params={"folder": "spam"}),
    Bad("PUT", "/brands/{side}/members/{side}", 422, "invalid_request", json={"role": "god"}),
    # unknown fields
    Bad("POST", MESSAGES, 422, "invalid_request",
        json={"client_id": "a", "text": "hi", "sender_id": "someone_else"}),
    Bad("PATCH", "/me", 422, "invalid_request", json={"kind": "brand"}),
    Bad("POST", "/conversations", 422, "invalid_request", json={"with": "ben", "admin": True}),
    # not JSON, not UTF-8
    Bad("POST", MESSAGES, 422, "invalid_json", content=b'{"client_id": "a", "text": "hi"',
        headers=JSON),
    Bad("POST", MESSAGES, 400, "bad_request", content=b'{"client_id":"a","text":"\xff\xfe"}',
        headers=JSON),
    Bad("PATCH", "/me", 400, "bad_request", content=b'{"display_name":"\xc3("}',
        headers=JSON),
    Bad("POST", MESSAGES, 400, "bad_request", content=b"[" * 100_000 + b"]" * 100_000,
        headers=JSON),  # nested too deep to parse
    Bad("POST", MESSAGES, 422, "invalid_request",
        json={"client_id": "a", "text": {"nested": [[[[["deep"]]]]]}}),
    Bad("POST", MESSAGES, 422, None, content=b"client_id=a&text=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Bad("POST", MESSAGES, 422, None, content=b"", headers=JSON),
    # text that is no text: lone surrogates, escaped (they cannot be encoded as UTF-8)
    Bad("POST", MESSAGES, 422, "invalid_request",
        content=rb'{"client_id":"a","text":"\ud800"}', headers=JSON),
    Bad("PATCH", "/me", 422, "invalid_request", content=rb'{"display_name":"\udfff"}',
        headers=JSON),
    Bad("POST", "/conversations/{conversation}/report", 422, "invalid_request",
        content=rb'{"reason":"\ud800"}', headers=JSON),
    Bad("POST", MESSAGES, 422, "invalid_request", json={"client_id": "no spaces", "text": "x"}),
    # huge bodies
    Bad("POST", MESSAGES, 413, "body_too_large", json={"client_id": "a", "text": "x" * HUGE}),
    Bad("PATCH", "/me", 413, "body_too_large", content=b"{" + b" " * HUGE + b"}",
        headers=JSON),
    Bad("POST", MESSAGES, 413, "body_too_large", content=b"1" * 10,
        headers={"Content-Type": "application/json", "Content-Length": "99999999999"}),
    Bad("POST", MESSAGES, 413, "message_too_long", json={"client_id": "a", "text": "x" * 10_001}),
    # bad cursors
    Bad("GET", "/conversations", 400, "invalid_cursor", params={"cursor": "garbage"}),
    Bad("GET", "/conversations", 400, "invalid_cursor",
        params={"cursor": cursors.encode("events", 1)}),
    Bad("GET", "/conversations", 400, "invalid_cursor",
        params={"cursor": cursors.encode("conversations", [1, 2])}),
    Bad("GET", "/conversations", 400, "invalid_cursor",
        params={"cursor": cursors.encode("conversations", [False, "\x00", "cnv_\x00"])}),
    Bad("GET", "/events", 400, "invalid_cursor", params={"after": "garbage", "timeout": "0"}),
    Bad("GET", MESSAGES, 422, "invalid_anchor", params={"before": "msg_nothing"}),
    # bad or absent tokens
    Bad("GET", "/me", 401, "unauthorized", token=None),
    Bad("GET", "/me", 401, "unauthorized", token="not-a-token"),
    Bad("GET", "/me", 401, "unauthorized", token="x" * 5000),
    Bad("GET", "/me", 401, "unauthorized", headers={"Authorization": "Basic YW5hOnB3"},
        token=None),
    Bad("POST", MESSAGES, 401, "unauthorized", json={"client_id": "a", "text": "hi"},
        token="revoked"),
    # over-long or odd path parameters
    Bad("GET", "/conversations/" + "c" * 65, 422, "invalid_request"),
    Bad("GET", "/conversations/" + "c" * 50, 404, "not_found"),
    Bad("GET", "/conversations/%00", 404, "not_found"),
    Bad("GET", MESSAGES, 422, "invalid_anchor", params={"after": "msg_\x00"}),
    Bad("POST", "/conversations", 404, "not_found", json={"with": "ben\x00"}),
    Bad("GET", "/conversations", 404, "not_found", params={"as": "ana\x00"}),
    Bad("GET", "/accounts/%00", 404, "not_found"),
    Bad("PUT", "/brands/%00/members/ana", 404, "not_found", json={"role": "agent"}),
    Bad("PATCH", "/messages/" + "m" * 65, 422, "invalid_request", json={"text": "x"}),
    Bad("PUT", "/messages/{message}/reactions/" + "a" * 65, 422, "invalid_request"),
    Bad("PUT", "/messages/{message}/reactions/%F0%9F", 422, "invalid_emoji"),
    Bad("GET", "/accounts/" + "h" * 65, 422, "invalid_request"),
    Bad("PUT", "/me/following/" + "h" * 65, 422, "invalid_request"),
    Bad("GET", "/brands/" + "b" * 65 + "/members", 422, "invalid_request"),
    # wrong method and unknown routes
    Bad("PUT", MESSAGES, 405, "method_not_allowed", json={}),
    Bad("GET", "/no/such/thing", 404, "not_found"),
]


async def test_bad_requests_get_a_clear_error_and_change_nothing(signup, app) -> None:
    ana, _ben, conversation = await friends(signup)
    message = await ana.send(conversation, "a message to aim at")
    revoked = await signup("rev")
    revoked_token = revoked.token
    await revoked.logout()
    values = {"conversation": conversation, "message": message["id"], "side": "ana"}
    before = database_snapshot(app)
    wrong = []
    for bad in REQUESTS:
        token = {"mine": ana.token, "revoked": revoked_token}.get(bad.token or "", bad.token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request: dict[str, Any] = {"headers": {**headers, **bad.headers}, "params": bad.params}
        if bad.content is not None:
            request["content"] = bad.content
        elif bad.json is not None:
            request["json"] = bad.json
        response = await ana.http.request(bad.method, "/api/v1" + bad.path.format(**values),
                                          **request)
        try:
            body = response.json()
            shaped = set(body) == {"error"} and set(body["error"]) == {"code", "message"} \
                and all(isinstance(v, str) and v for v in body["error"].values())
            code = body["error"]["code"]
        except (ValueError, KeyError, TypeError):
            shaped, code = False, None
        expected_code = bad.code or code
        if (response.status_code, code, shaped) != (bad.status, expected_code, True):
            wrong.append((bad.method, bad.path[:40], response.status_code, response.text[:160]))
    assert wrong == [], "\n".join(map(str, wrong))
    assert database_snapshot(app) == before


async def test_a_chunked_body_over_the_limit_is_refused(signup, app) -> None:
    """No Content-Length to trust: the limit is counted while reading."""
    ana, _ben, conversation = await friends(signup)
    before = database_snapshot(app)

    async def chunks() -> Any:
        yield b'{"client_id": "big", "text": "'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"}'

    response = await ana.http.post(f"/api/v1/conversations/{conversation}/messages",
                                   content=chunks(),
                                   headers={"Authorization": f"Bearer {ana.token}",
                                            "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert database_snapshot(app) == before


async def test_the_error_never_echoes_the_token(client) -> None:
    sdk = client()
    secret = "tok_" + "s3cr3t" * 10
    response = await sdk.http.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401 and secret not in response.text


# -- Schemathesis over /openapi.json ----------------------------------------------------------

EXAMPLES_PER_OPERATION = 25
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


def _explore(operation: Any, headers: Callable[[], dict[str, str]],
             real_ids: dict[str, str]) -> None:
    """Send generated requests for one operation, valid and invalid ones, some aimed at the
    real conversation and message, and check each answer."""
    names = {p.name for p in operation.path_parameters}
    strategies = [operation.as_strategy(GenerationMode.POSITIVE),
                  operation.as_strategy(GenerationMode.NEGATIVE)]
    if names & real_ids.keys():
        strategies.append(operation.as_strategy(path_parameters={
            name: value for name, value in real_ids.items() if name in names}))

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=st.one_of(strategies))
    def exercise(case: schemathesis.Case) -> None:
        if operation.path == "/api/v1/events":  # a long-poll would wait out its timeout
            case.query = {**(case.query or {}), "timeout": 0}
        case.call_and_validate(headers=headers(), checks=CHECKS)

    exercise()


def _login(http: TestClient, handle: str) -> str:
    return str(http.post("/api/v1/sessions",
                         json={"handle": handle, "password": PASSWORD}).json()["token"])


def _signup(http: TestClient, handle: str) -> str:
    http.post("/api/v1/accounts", json={"handle": handle, "password": PASSWORD,
                                        "display_name": handle.title()})
    return _login(http, handle)


@pytest.fixture
def sync_app(settings_factory: Callable[..., Settings]) -> Iterator[App]:
    """The App for a synchronous test (Schemathesis drives it through Starlette's TestClient,
    on that client's own event loop): only the database is started."""
    instance = App(settings_factory(login_attempts_per_minute=10_000))
    instance.db.start()
    yield instance
    instance.db.close()


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(sync_app: App) -> None:
    """Generated requests for every operation, authenticated as a real account with a real
    conversation: every answer is below 500, has a documented status and matches its schema."""
    asgi = sync_app.asgi()
    http = TestClient(asgi)
    auth = {"Authorization": f"Bearer {_signup(http, 'ana')}"}
    _signup(http, "ben")
    conversation = http.post("/api/v1/conversations", json={"with": "ben"}, headers=auth).json()
    message = http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                        json={"client_id": "seed", "text": "hola"}, headers=auth).json()
    real_ids = {"conversation_id": conversation["id"], "message_id": message["id"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi)

    def our_session() -> dict[str, str]:
        return auth

    def a_new_session() -> dict[str, str]:  # for logging out, which ends the session it uses
        return {"Authorization": f"Bearer {_login(http, 'ana')}"}

    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = a_new_session if operation.path == "/api/v1/sessions/current" else our_session
        try:
            _explore(operation, headers, real_ids)
        except (Exception, FailureGroup) as failure:  # every operation's, not just the first
            problems.append(f"{operation.method.upper()} {operation.path}: {failure!r}"[:1500])
    assert problems == [], "\n\n".join(problems)
