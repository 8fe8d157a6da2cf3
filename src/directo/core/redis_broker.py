"""The broker across processes: Redis pub/sub carries wake-ups and ephemeral events, Redis
keys carry presence.

Redis is never the source of truth. Every process delivers to its own subscribers at once and
publishes for the others from a background task, so a send never waits for Redis nor fails
because of it. A lost message costs latency only: the stream pusher re-reads the database every
``catch_up_seconds``, and after (re)connecting the listener wakes every local subscriber once,
so whatever was missed while Redis was away arrives at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, cast

import orjson
import redis.asyncio as redis
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from directo.core import metrics
from directo.core.broker import LocalBroker, Presence
from directo.core.errors import DirectoError

log = logging.getLogger("directo.broker")

CHANNEL = "directo:events"
OUTBOX_MAX = 10_000  # wake-ups waiting to be published; past that they are dropped (and counted)
PUBLISH_BATCH_MAX = 256
RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS = 0.1, 5.0
PRESENCE_TTL_SECONDS = 30  # a process that stops heartbeating counts as gone after this
HEARTBEAT_SECONDS = 10
PRESENCE_KEEP_SECONDS = 30 * 86400  # how long "last seen" is remembered
LEFT = "left"  # the presence member whose score is when the account last disconnected

broker_dropped = Counter("directo_broker_dropped_total",
                         "notifications dropped because the publish queue was full",
                         registry=metrics.registry)

# one queued notification: accounts to wake, or accounts and the ephemeral event for them
Outgoing = tuple[frozenset[str], dict[str, Any] | None]


def client_options() -> dict[str, Any]:
    """For every Redis client: fail fast while Redis is away, and retry once on a connection
    the server closed, so the first command after a Redis restart does not fail."""
    return {"socket_connect_timeout": 1, "socket_timeout": 5,
            "retry": Retry(ExponentialBackoff(cap=0.5), retries=1)}


def presence_key(account_id: str) -> str:
    return f"directo:presence:{account_id}"


class RedisBroker(LocalBroker):
    loses_wakeups = True  # pub/sub is at most once: the streams' catch-up covers it

    def __init__(self, url: str) -> None:
        super().__init__()
        self.origin = uuid.uuid4().hex  # tags what this process publishes, to skip its echo
        self._redis = redis.Redis.from_url(url, health_check_interval=10, **client_options())
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=OUTBOX_MAX)
        self._presence_dirty: set[str] = set()
        self._presence_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing: set[str] = set()  # operations failing now: logged once, not per call

    async def start(self) -> None:
        for loop in (self._publish_forever, self._listen_forever, self._presence_forever):
            self._tasks.append(asyncio.create_task(loop(), name=f"redis-{loop.__name__}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._open_streams:
            await self._guarded("presence", self._write_presence(set(self._open_streams),
                                                                 leaving=True))
        await self._redis.aclose()

    # -- publishing: local delivery now, the other processes through Redis --------------------

    def publish(self, account_ids: set[str]) -> None:
        self.deliver_wake(account_ids)
        self._enqueue((frozenset(account_ids), None))

    def publish_ephemeral(self, account_ids: set[str], event: dict[str, Any]) -> None:
        self.deliver_ephemeral(account_ids, event)
        self._enqueue((frozenset(account_ids), event))

    def _enqueue(self, item: Outgoing) -> None:
        if not self._tasks or not item[0]:
            return
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            broker_dropped.inc()

    async def _publish_forever(self) -> None:
        """One PUBLISH for everything that queued up while the previous one was in flight."""
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < PUBLISH_BATCH_MAX and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            await self._guarded("publish", self._publish(batch))

    async def _publish(self, batch: list[Outgoing]) -> None:
        await self._redis.publish(CHANNEL, self._encode(batch))

    def _encode(self, batch: list[Outgoing]) -> bytes:
        wake: set[str] = set()
        ephemeral = []
        for account_ids, event in batch:
            if event is None:
                wake.update(account_ids)
            else:
                ephemeral.append({"to": sorted(account_ids), "event": event})
        return orjson.dumps({"origin": self.origin, "wake": list(wake),
                             "ephemeral": ephemeral})

    # -- listening: one subscription per process, delivered to local subscribers --------------

    async def _listen_forever(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        delay = RECONNECT_MIN_SECONDS
                        self._succeeded("listen")
                        self._recover()
                    elif message["type"] == "message":
                        self._receive(message["data"])
            except (RedisError, OSError) as error:
                self._failed("listen", error)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _recover(self) -> None:
        """After (re)subscribing: anything published meanwhile may be lost, so every local
        subscriber re-reads its stream once; and a restarted Redis has lost presence, so it
        is written again now rather than at the next heartbeat."""
        self.deliver_wake(list(self._subs))
        for account_id in self._open_streams:
            self._mark_presence_changed(account_id)

    def _receive(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            if message["origin"] == self.origin:
                return
            self.deliver_wake(message["wake"])
            for item in message["ephemeral"]:
                self.deliver_ephemeral(item["to"], item["event"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            self._failed("decode", error)

    # -- presence: a sorted set per account, member = process, score = its last heartbeat -----

    def stream_opened(self, account_id: str) -> None:
        super().stream_opened(account_id)
        self._mark_presence_changed(account_id)

    def stream_closed(self, account_id: str) -> None:
        super().stream_closed(account_id)
        self._mark_presence_changed(account_id)

    def _mark_presence_changed(self, account_id: str) -> None:
        self._presence_dirty.add(account_id)
        self._presence_changed.set()

    async def _presence_forever(self) -> None:
        """Write presence changes as they happen, and refresh every online account's entry
        each heartbeat (a killed process's entries age out after PRESENCE_TTL_SECONDS)."""
        next_heartbeat = 0.0
        while True:
            wait = max(0.0, next_heartbeat - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._presence_changed.wait(), wait)
            self._presence_changed.clear()
            changed, self._presence_dirty = self._presence_dirty, set()
            if time.monotonic() >= next_heartbeat:
                changed |= set(self._open_streams)
                next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
            if changed and not await self._guarded("presence", self._write_presence(changed)):
                self._presence_dirty |= changed  # try again at the next heartbeat

    async def _write_presence(self, account_ids: set[str], leaving: bool = False) -> None:
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                key = presence_key(account_id)
                pipe.zremrangebyscore(key, "-inf", now - PRESENCE_TTL_SECONDS)
                if account_id in self._open_streams and not leaving:
                    pipe.zadd(key, {self.origin: now})
                else:
                    pipe.zrem(key, self.origin)
                    pipe.zadd(key, {LEFT: now})
                pipe.expire(key, PRESENCE_KEEP_SECONDS)
            await pipe.execute()

    async def presence(self, account_id: str) -> Presence:
        try:
            entries = cast(list[tuple[bytes, float]], await self._redis.zrange(
                presence_key(account_id), 0, -1, withscores=True))
        except (RedisError, OSError) as error:
            self._failed("presence", error)
            raise DirectoError("presence_unavailable", "presence is unavailable right now; "
                               "try again shortly", status=503) from None
        now = time.time()
        online = any(member != LEFT.encode() and score > now - PRESENCE_TTL_SECONDS
                     for member, score in entries)
        if online:
            return Presence(True, now)
        return Presence(False, max((score for _, score in entries), default=None))

    # -- failures: counted, and logged once per outage by kind, never with a payload ---------

    async def _guarded(self, operation: str, call: Awaitable[Any]) -> bool:
        """Run ``call``; a failure is counted and logged, and never ends a background loop."""
        try:
            await call
        except Exception as error:
            self._failed(operation, error)
            return False
        self._succeeded(operation)
        return True

    def _failed(self, operation: str, error: BaseException) -> None:
        metrics.broker_failures.labels(operation).inc()
        if operation not in self._failing:
            self._failing.add(operation)
            log.warning("redis %s failed: %s", operation, type(error).__name__)

    def _succeeded(self, operation: str) -> None:
        if operation in self._failing:
            self._failing.discard(operation)
            log.info("redis %s works again", operation)
