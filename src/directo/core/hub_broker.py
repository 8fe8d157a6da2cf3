"""A worker's side of the hub (core/hub.py): the broker and the rate-limit storage of the
processes of one ``directo serve --workers N`` without Redis.

Like ``RedisBroker``, it delivers to its own subscribers at once and never lets a send wait
for the hub or fail because of it: lines for the hub are written at the end of the loop's
turn, many at once. While the hub is away, wake-ups to other workers are lost (their streams'
catch-up finds them), budgets are not enforced (as with Redis away), and presence answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from itertools import count
from pathlib import Path
from typing import Any

import orjson
from limits.aio.storage import MovingWindowSupport, Storage

from directo.core import metrics
from directo.core.broker import LocalBroker, Presence
from directo.core.errors import DirectoError
from directo.core.hub import BACKLOG_MAX, LINE_LIMIT

log = logging.getLogger("directo.hub")

RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS = 0.05, 2.0
CALL_TIMEOUT_SECONDS = 2.0
HELLO = -1  # the id of the call that opens each connection


class HubUnavailable(Exception):
    """The hub did not answer: not connected, connection lost, or the call failed there."""


class HubBroker(LocalBroker):
    loses_wakeups = True  # while the hub is away: the streams' catch-up covers it

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._writer: asyncio.StreamWriter | None = None
        self._unsent: list[bytes] = []
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._ids = count()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._lost_logged = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name="hub-connection")
        with contextlib.suppress(TimeoutError):  # serve anyway; it keeps trying
            async with asyncio.timeout(5):
                await self._connected.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- the connection -----------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self._path),
                                                                    limit=LINE_LIMIT)
            except OSError as error:
                self._lost(type(error).__name__)
            else:
                delay = RECONNECT_MIN_SECONDS
                try:
                    await self._session(reader, writer)
                    self._lost("closed by the hub")
                except (OSError, ValueError, KeyError, TypeError) as error:
                    self._lost(type(error).__name__)
                finally:
                    self._disconnected(writer)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._unsent.clear()  # what waited was meant for the connection that was lost
        # the hub answers this once it counts the connection as a worker: from then on,
        # what other workers publish reaches this one
        self._send({"t": "call", "id": HELLO, "m": "hello", "args": []})
        if self._open_streams:  # the hub forgot this process's streams with the connection
            self._send({"t": "streams", "delta": dict(self._open_streams)})
        while line := await reader.readline():
            self._receive(orjson.loads(line))

    def _receive(self, message: dict[str, Any]) -> None:
        if message["t"] == "pub":
            self.deliver_wake(message["wake"])
            for item in message["eph"]:
                self.deliver_ephemeral(item["to"], item["event"])
        elif message["t"] == "ret" and message["id"] == HELLO:
            self._connected.set()
            if self._lost_logged:
                self._lost_logged = False
                log.info("hub connection works again")
            # anything published while the hub was away was lost: every stream re-reads
            self.deliver_wake(list(self._subs))
        elif message["t"] == "ret":
            call = self._calls.pop(message["id"], None)
            if call is not None and not call.done():
                if "err" in message:
                    call.set_exception(HubUnavailable(message["err"]))
                else:
                    call.set_result(message["v"])

    def _disconnected(self, writer: asyncio.StreamWriter) -> None:
        self._writer = None
        self._connected.clear()
        writer.close()
        for call in self._calls.values():
            if not call.done():
                call.set_exception(HubUnavailable("the hub connection was lost"))
        self._calls.clear()

    def _lost(self, why: str) -> None:
        """Counted each time; logged once until the connection works again."""
        metrics.broker_failures.labels("hub").inc()
        if not self._lost_logged:
            self._lost_logged = True
            log.warning("hub connection lost: %s", why)

    def _send(self, message: dict[str, Any]) -> None:
        """Queue one line; the lines of one turn of the loop go out in one write."""
        if self._writer is None:
            return
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unsent.append(orjson.dumps(message) + b"\n")

    def _flush(self) -> None:
        if self._writer is not None and self._unsent:
            if self._writer.transport.get_write_buffer_size() < BACKLOG_MAX:
                self._writer.write(b"".join(self._unsent))
            else:  # the hub stopped reading: calls time out, wake-ups wait for the catch-up
                metrics.broker_failures.labels("hub").inc()
        self._unsent.clear()

    async def call(self, method: str, *args: Any) -> Any:
        if self._writer is None:
            raise HubUnavailable("not connected to the hub")
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self._send({"t": "call", "id": call_id, "m": method, "args": args})
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                return await future
        except TimeoutError:
            raise HubUnavailable("the hub did not answer in time") from None
        finally:
            self._calls.pop(call_id, None)

    # -- the broker ---------------------------------------------------------------------------

    def publish(self, account_ids: set[str]) -> None:
        self.deliver_wake(account_ids)
        if account_ids:
            self._send({"t": "pub", "wake": list(account_ids), "eph": []})

    def publish_ephemeral(self, account_ids: set[str], event: dict[str, Any]) -> None:
        self.deliver_ephemeral(account_ids, event)
        if account_ids:
            self._send({"t": "pub", "wake": [], "eph": [{"to": list(account_ids),
                                                         "event": event}]})

    def stream_opened(self, account_id: str) -> None:
        super().stream_opened(account_id)
        self._send({"t": "streams", "delta": {account_id: 1}})

    def stream_closed(self, account_id: str) -> None:
        super().stream_closed(account_id)
        self._send({"t": "streams", "delta": {account_id: -1}})

    async def presence(self, account_id: str) -> Presence:
        try:
            online, last_seen = await self.call("presence", account_id)
        except HubUnavailable:
            raise DirectoError("presence_unavailable", "presence is unavailable right now; "
                               "try again shortly", status=503) from None
        return Presence(online, last_seen)


class HubStorage(Storage, MovingWindowSupport):
    """``limits``' storage interface, answered by the hub's one memory storage, so that every
    worker spends from the same budgets."""

    def __init__(self, broker: HubBroker) -> None:
        super().__init__(wrap_exceptions=True)
        self._broker = broker

    @property
    def base_exceptions(self) -> type[Exception]:
        return HubUnavailable

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(await self._broker.call("incr", key, expiry, amount))

    async def get(self, key: str) -> int:
        return int(await self._broker.call("get", key))

    async def get_expiry(self, key: str) -> float:
        return float(await self._broker.call("get_expiry", key))

    async def check(self) -> bool:
        return bool(await self._broker.call("check"))

    async def reset(self) -> int | None:
        value = await self._broker.call("reset")
        return None if value is None else int(value)

    async def clear(self, key: str) -> None:
        await self._broker.call("clear", key)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return bool(await self._broker.call("acquire_entry", key, limit, expiry, amount))

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        start, entries = await self._broker.call("get_moving_window", key, limit, expiry)
        return float(start), int(entries)

