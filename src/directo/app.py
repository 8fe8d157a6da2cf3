"""The App object: settings -> database -> keyring -> broker -> services; and its ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from cachetools import LRUCache
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Scope

from directo import __version__, logs
from directo.config import Settings
from directo.core import metrics, prepared
from directo.core.broker import LocalBroker
from directo.core.crypto import load_keyring
from directo.core.db import Database
from directo.core.http import (
    AccessLog,
    BodyLimit,
    HotRoutes,
    access_lines,
    install_api_docs,
    install_error_handlers,
)

log = logging.getLogger("directo")
BACKGROUND_STOP_SECONDS = 5.0  # how long App.stop waits for a background loop to finish a round

API_DESCRIPTION = """Private one-to-one direct messages between people, creators and brands.

Authenticate with `Authorization: Bearer <token>` from `POST /api/v1/sessions`. Every error is
`{"error": {"code": "...", "message": "..."}}`. Lists use opaque cursors."""


class App:
    def __init__(self, settings: Settings | None = None, *, owns_process: bool = False) -> None:
        """``owns_process``: this app is the process's only one (``directo serve``), so it
        may tune the process's garbage collector."""
        self.settings = settings or Settings()
        self.owns_process = owns_process
        if self.settings.database_url is None or self.settings.master_key is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.settings.effective_database_url)
        # bearer tokens' hashes resolved by this process: their account ids and when their
        # sessions end, as Unix times. SQLite in one process only: where processes share the
        # database, a logout through another must be seen at once (accounts.service.account_id_of)
        self.signed_in: LRUCache[str, tuple[str, float]] | None = (
            LRUCache(100_000) if self.db.is_sqlite and not self.settings.hub_socket else None)
        self.keyring = load_keyring(self.settings.master_key, self.settings.previous_master_keys,
                                    self.settings.data_dir)
        self.broker = self._make_broker()
        self.db.on_commit = self.broker.publish
        storage = self._make_budget_storage()
        self.limiter = MovingWindowRateLimiter(storage)
        self.send_limiter = FixedWindowRateLimiter(storage)  # cheaper: it is on the send path
        self.passwords = PasswordHasher(memory_cost=self.settings.argon2_memory_kib,
                                        time_cost=self.settings.argon2_time_cost)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._api: FastAPI | None = None
        self._served: ASGIApp | None = None

    def _make_broker(self) -> LocalBroker:
        if self.settings.broker_url:
            from directo.core.redis_broker import RedisBroker

            return RedisBroker(self.settings.broker_url)
        if self.settings.hub_socket:
            from directo.core.hub_broker import HubBroker

            return HubBroker(self.settings.hub_socket)
        return LocalBroker()

    def _make_budget_storage(self) -> Storage:
        """Where rate-limit budgets are kept: one set shared by every process (Redis, or the
        hub of ``--workers N``), or this process's memory."""
        if self.settings.broker_url:
            from directo.core.redis_broker import client_options

            storage = storage_from_string("async+" + self.settings.broker_url,
                                          implementation="redispy", wrap_exceptions=True,
                                          **client_options())
            assert isinstance(storage, Storage)  # "async+" asks for the asyncio variant
            return storage
        if self.settings.hub_socket:
            from directo.core.hub_broker import HubBroker, HubStorage

            assert isinstance(self.broker, HubBroker)
            return HubStorage(self.broker)
        return MemoryStorage()

    async def start(self) -> None:
        from directo.events.service import catch_up_forever

        self._stopping = asyncio.Event()  # this loop's
        self.db.start()
        await self.broker.start()
        self._tasks.append(asyncio.create_task(_housekeeping_forever(self)))
        if self.broker.loses_wakeups:
            self._tasks.append(asyncio.create_task(catch_up_forever(self)))
        prepared.compile_all(self.db.served_dialect)

    async def stop(self) -> None:
        """Background loops end at their next rest, once done with what they are doing: cut
        off midway (their pool still connecting, say), asyncpg reported the end of a
        connection as an error nobody awaited. One still busy after ``BACKGROUND_STOP_SECONDS``
        is cancelled."""
        self._stopping.set()
        if self._tasks:
            _, busy = await asyncio.wait(self._tasks, timeout=BACKGROUND_STOP_SECONDS)
            for task in busy:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        await self.broker.close()
        await self.db.aclose()
        access_lines.flush()  # uvicorn ends the process by its signal: no atexit

    async def rest(self, seconds: float) -> bool:
        """A background loop's wait between rounds: False, at once, when the app stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return not self._stopping.is_set()

    def asgi(self) -> ASGIApp:
        """What is served: Directo's own middleware and hot routes in front of the FastAPI
        application (``api``); built once."""
        if self._served is None:
            self._api, self._served = build_asgi(self)
        return self._served

    @property
    def api(self) -> FastAPI:
        """The FastAPI application behind ``asgi()``: the routes and their OpenAPI."""
        self.asgi()
        assert self._api is not None
        return self._api


async def _housekeeping_forever(app: App) -> None:
    """Hourly, from start: drop events past their retention and sessions past their
    lifetime. A job that fails is logged and tried again the next hour; meanwhile streams
    stay correct and expired sessions stay refused (the lookup checks their age)."""
    from directo.accounts.service import end_expired_sessions
    from directo.events.service import prune_events

    while True:
        for job in (prune_events, end_expired_sessions):
            try:
                await job(app)
            except Exception as error:
                log.warning("housekeeping: %s failed: %s", job.__name__, type(error).__name__)
        if not await app.rest(3600):
            return


def build_asgi(app: App) -> tuple[FastAPI, ASGIApp]:
    """The FastAPI application, and what serves it.

    Directo's own middleware runs in front of FastAPI's, not inside it: the hot paths of the
    send route and of the long poll are answered before FastAPI's own layers (its error
    handler, body limit and telemetry, which reads its settings on every request), which
    cost about 6 % of a send's CPU, and so is the event stream; a waiting poll or an open
    stream would keep those layers alive meanwhile (docs/performance.md). Every other
    request goes on through them as before."""
    from directo.accounts.api import router as accounts_router
    from directo.brands.api import router as brands_router
    from directo.conversations.api import hot_routes as conversations_hot_routes
    from directo.conversations.api import router as conversations_router
    from directo.events.api import hot_routes as events_hot_routes
    from directo.events.api import hot_sockets as events_hot_sockets
    from directo.events.api import router as events_router
    from directo.presence.api import router as presence_router
    from directo.web import install as install_web_app
    from directo.web.security import SecurityHeaders

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        await app.start()
        if app.owns_process:  # before the freeze, so that what the walk builds is frozen too
            await _walk_routes(api)
            metrics.time_gc_pauses()
            _tune_garbage_collector()
        try:
            yield
        finally:
            await app.stop()

    api = FastAPI(title="Directo", version=__version__, description=API_DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    api.state.directo = app
    install_error_handlers(api)
    install_api_docs(api)
    # Routes are matched in order, one regular expression each: the send and delivery
    # routes come first (the profile showed matching past 25 routes on every send).
    for router in (conversations_router, events_router, accounts_router, brands_router,
                   presence_router):
        api.include_router(router)
    install_web_app(api)

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @api.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def prometheus(_: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    hot = {**conversations_hot_routes(app), **events_hot_routes(app)}
    hot_routes = [(route, hot[route.endpoint])
                  for route in (*conversations_router.routes, *events_router.routes)
                  if isinstance(route, APIRoute) and route.endpoint in hot]
    assert len(hot_routes) == len(hot), "every hot handler names a route of its router"
    served = AccessLog(BodyLimit(SecurityHeaders(HotRoutes(api, hot_routes,
                                                           events_hot_sockets(app))),
                                 limit=app.settings.max_body_bytes))
    return api, served


def create_asgi() -> ASGIApp:
    """Factory for uvicorn (``directo serve``, and each of ``--workers N``, whose processes
    are spawned afresh and set up their logging here)."""
    app = App(owns_process=True)
    logs.configure(app.settings.log_level)
    return app.asgi()


async def _walk_routes(api: FastAPI) -> None:
    """Have FastAPI build its routes now, not during the first request.

    FastAPI builds an included router's routes (their dependencies, validators and
    serialisers) the first time a request is matched against them: the first request a
    started process answered took 70-120 ms (1-2 ms after). A request for a path that no
    route has is matched against every router; it goes to the router alone, so no access
    log, metric or middleware sees it."""
    path = "/.directo-start-up"
    scope: Scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
                    "path": path, "raw_path": path.encode(), "root_path": "",
                    "query_string": b"", "headers": [], "client": None, "server": None}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Message) -> None:
        pass

    await api.router(scope, receive, send)


def _tune_garbage_collector() -> None:
    """Keep Python's garbage collector from stopping the event loop for long.

    - Everything alive after start-up (modules, classes, schemas, compiled statements: about
      135,000 objects) is frozen beyond its reach: it lives as long as the process, and every
      full collection walked it, stopping the loop for 90-150 ms, the tail of the deliver
      benchmark.
    - A young collection runs every 10,000 net allocations instead of 700. A full collection
      waits for ten of the middle generation's, so for about 1,000,000 net allocations
      instead of 70,000 (and, as always, for the long-lived objects to grow by a quarter).
      Opening 10,000 streams ran 13 full collections of 0.1-1 s each; now it runs one.
    Both measured in docs/performance.md."""
    gc.collect()
    gc.freeze()
    metrics.gc_frozen.set(gc.get_freeze_count())
    gc.set_threshold(10_000, 10, 10)
