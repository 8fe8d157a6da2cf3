"""HTTP plumbing shared by every router: error shapes, body limits, access log, metrics,
hot routes."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from directo.core import metrics
from directo.core.errors import DirectoError, error_body

log = logging.getLogger("directo.http")
ACCESS_FLUSH_SECONDS = 0.5  # how long an access-log line may wait to be written


class AccessLines:
    """The access log: a line per request on stderr, in the format of every other line
    (``time level directo.access method route status duration``), built and written here
    rather than through ``logging``.

    Through ``logging``, a line cost about a sixth of a send's CPU in the server (the
    record, the formatter and a write per line, each several times its cost in a tight loop:
    docs/performance.md). Here it is one string, written with the others of the last
    ``ACCESS_FLUSH_SECONDS`` in one call, and when the app stops or the process exits; a
    process killed with ``kill -9`` loses at most that much of its access log. Enabled by
    ``logs.configure`` at ``info`` and ``debug``."""

    def __init__(self) -> None:
        self.enabled = False
        self._pending: list[str] = []
        self._since = 0.0  # when the oldest pending line was added
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text
        atexit.register(self.flush)

    def add(self, method: str, path: str, status: int, seconds: float) -> None:
        now = time.time()
        second, stamp = self._second
        if int(now) != second:
            second = int(now)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = (second, stamp)
        if not self._pending:
            self._since = now
            asyncio.get_running_loop().call_later(ACCESS_FLUSH_SECONDS, self.flush)
        self._pending.append(f"{stamp},{int((now - second) * 1000):03d} INFO directo.access "
                             f"{method} {path} {status} {seconds * 1000:.1f}ms\n")
        if now - self._since > ACCESS_FLUSH_SECONDS:  # its timer was lost with its loop
            self.flush()

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = "".join(self._pending), []
            sys.stderr.write(lines)
            sys.stderr.flush()


access_lines = AccessLines()


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    return {status: {"model": ErrorOut} for status in statuses}


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
                 413: "body_too_large", 415: "unsupported_media_type", 429: "rate_limited"}


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


def error_response(error: DirectoError) -> Response:
    return JSONResponse(error_body(error.code, error.message), status_code=error.status,
                        headers=error.headers)


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(DirectoError)
    async def _directo(_: Request, error: DirectoError) -> Response:
        return error_response(error)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> Response:
        problems = error.errors()
        code = "invalid_json" if any(p.get("type") == "json_invalid" for p in problems) \
            else "invalid_request"
        message = "; ".join(_describe(p) for p in problems[:5]) or "invalid request"
        return JSONResponse(error_body(code, message), status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> Response:
        if isinstance(error.__cause__, _BodyTooLarge):  # FastAPI wraps what reading raised
            return _too_large(error.__cause__.limit)
        code = _STATUS_CODES.get(error.status_code, "error")
        message = error.detail if isinstance(error.detail, str) else code
        return JSONResponse(error_body(code, message), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @api.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> Response:
        return unexpected_error_response(error)


def unexpected_error_response(error: Exception) -> Response:
    """The 500 for an error no handler expected, logged with its traceback."""
    log.error("unhandled %s", type(error).__name__, exc_info=error)
    return JSONResponse(error_body("internal_error", "something went wrong on our side"),
                        status_code=500)


HotHandler = Callable[[dict[str, str], Scope, bytes], Awaitable[Response | None]]
HotSocket = Callable[[WebSocket], Awaitable[None]]


class HotRoutes:
    """The few routes on the send and delivery paths (a send, a long poll), answered without
    FastAPI's routing, dependency solving and exception middleware, which together cost more
    CPU than the send itself, and which a waiting long poll would hold for as long as it
    waits (docs/performance.md).

    The FastAPI route stays the definition: its path, its OpenAPI entry and every answer
    but the plain one. A hot handler gets the path parameters, the scope (headers, query)
    and the whole body; it answers the plain case (say, a bearer token and a well-formed
    body) or returns None, and then the request goes on to the FastAPI route with the body
    replayed, which answers it (with the standard validation error, say). A
    ``DirectoError`` becomes the same error answer as on the FastAPI route, and so does an
    error nobody expected.
    Installed inside the body limit, access log and security headers, which see hot and
    ordinary requests alike, and in front of FastAPI's own middleware (see ``app.py``).

    ``sockets`` are WebSocket endpoints by exact path, served here whole. A WebSocket has
    no validation error to fall back on, and an open socket keeps every layer it passed
    through suspended for its whole life: through FastAPI's router an idle stream held 180
    objects for the garbage collector to walk instead of 112, and 41 KiB instead of 28
    (docs/performance.md)."""

    def __init__(self, app: ASGIApp, routes: list[tuple[APIRoute, HotHandler]],
                 sockets: dict[str, HotSocket]) -> None:
        self.app = app
        self.routes = routes
        self.sockets = sockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route, handler in self.routes:
                if scope["method"] in route.methods:  # type: ignore[operator]
                    found = route.path_regex.match(scope["path"])
                    if found is not None:
                        await self._serve(route, handler, found.groupdict(), scope, receive,
                                          send)
                        return
        elif scope["type"] == "websocket":
            socket = self.sockets.get(scope["path"])
            if socket is not None:
                await socket(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: APIRoute, handler: HotHandler, params: dict[str, str],
                     scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            response = await handler(params, scope, body)
        except DirectoError as error:
            response = error_response(error)
        except Exception as error:
            response = unexpected_error_response(error)
        if response is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = route  # for the access log, as the router would have set it
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over a body already read, then defers to the real one."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before anything reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _too_large(self.limit)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def _too_large(limit: int) -> JSONResponse:
    body = error_body("body_too_large", f"request bodies are limited to {limit} bytes")
    return JSONResponse(body, status_code=413)


class AccessLog:
    """Method, route, status and duration; never the query string (it may hold a token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            metrics.observe_request(scope["method"], path, status, elapsed)
            if access_lines.enabled:
                access_lines.add(scope["method"], path, status, elapsed)


def install_api_docs(api: FastAPI) -> None:
    """Swagger UI at ``/docs``, served from the installed ``swagger-ui-bundle-v2`` package
    rather than FastAPI's default CDN: a self-hosted server must not make its visitors'
    browsers fetch code from elsewhere."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    api.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="api-docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(
            openapi_url=api.openapi_url or "/openapi.json", title=f"{api.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css", swagger_favicon_url="data:,")
