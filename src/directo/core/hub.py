"""The hub: what the worker processes of one ``directo serve --workers N`` share when there is
no Redis (the embedded default, SQLite).

The supervising process runs it in a thread, on a Unix socket in a private directory. Each
worker keeps one connection to it (core/hub_broker.py) and, through it:

- publishes wake-ups and ephemeral events (typing), which the hub passes on to every other
  worker unread;
- reports its open streams, from which the hub answers presence;
- asks for rate-limit budgets, kept in one ``limits`` memory storage for all of them.

Like Redis, the hub is never the source of truth: messages live in the database, and a worker
that loses the hub reconnects, re-reads its streams and reports its streams again.

The wire format is one JSON object per line. ``t`` says what a line is: ``pub`` (passed on),
``streams`` (``delta``: account id -> streams opened, or closed if negative), ``call``
(``id``, ``m`` the method, ``args``), answered by ``ret`` (``id`` and ``v``, or ``err``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from cachetools import LRUCache
from limits.aio.storage import MemoryStorage

from directo.core.broker import LAST_SEEN_KEPT

log = logging.getLogger("directo.hub")

# what a worker may ask of the budget storage: the calls ``limits``' strategies make
STORAGE_CALLS = frozenset({"incr", "get", "get_expiry", "clear", "acquire_entry",
                           "get_moving_window", "check", "reset"})
LINE_LIMIT = 1 << 20  # a line longer than this ends its connection
# A worker that reads slower than the others publish is skipped past this much unsent: a lost
# wake-up costs it latency only (its streams' catch-up finds what it missed).
BACKLOG_MAX = 8 << 20


class Hub:
    def __init__(self) -> None:
        self._workers: dict[asyncio.StreamWriter, Counter[str]] = {}
        self._online: Counter[str] = Counter()  # open streams per account, all workers
        self._last_seen: LRUCache[str, float] = LRUCache(LAST_SEEN_KEPT)
        self._budgets = MemoryStorage()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        # lines for each worker, written at the end of the loop's turn: one write, not one
        # per line
        self._unsent: dict[asyncio.StreamWriter, list[bytes]] = {}

    async def serve(self, path: Path) -> None:
        self._server = await asyncio.start_unix_server(self._worker, path=str(path),
                                                       limit=LINE_LIMIT)

    async def close(self) -> None:
        """Stop listening and hang up on every worker (they reconnect to the next hub)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._workers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)

    async def _worker(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        streams: Counter[str] = Counter()
        self._workers[writer] = streams
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            while line := await reader.readline():
                await self._handle(writer, streams, line)
        except (ConnectionError, ValueError, KeyError, TypeError) as error:
            log.warning("hub: dropped a worker's connection: %s", type(error).__name__)
        finally:
            del self._workers[writer]
            self._count({account: -n for account, n in streams.items()}, streams)  # all gone
            writer.close()
            self._handlers.discard(handler)

    async def _handle(self, writer: asyncio.StreamWriter, streams: Counter[str],
                      line: bytes) -> None:
        message = orjson.loads(line)
        kind = message["t"]
        if kind == "pub":
            for other in self._workers:
                if other is not writer and other.transport.get_write_buffer_size() < BACKLOG_MAX:
                    self._write(other, line)
        elif kind == "streams":
            self._count(message["delta"], streams)
        elif kind == "call":
            self._write(writer, await self._answer(message["id"], message["m"], message["args"]))

    def _write(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unsent.setdefault(writer, []).append(line)

    def _flush(self) -> None:
        for writer, lines in self._unsent.items():
            if not writer.is_closing():
                writer.write(b"".join(lines))
        self._unsent.clear()

    def _count(self, delta: dict[str, int], streams: Counter[str]) -> None:
        for account, n in delta.items():
            streams[account] += n
            if streams[account] <= 0:
                del streams[account]
            self._online[account] += n
            if self._online[account] <= 0:
                del self._online[account]
                self._last_seen[account] = time.time()

    async def _answer(self, call_id: int, method: str, args: list[Any]) -> bytes:
        try:
            if method == "hello":  # a worker's first call: it is counted from now on
                value: Any = True
            elif method == "presence":
                account = args[0]
                value = ([True, time.time()] if account in self._online
                         else [False, self._last_seen.get(account)])
            elif method in STORAGE_CALLS:
                value = await getattr(self._budgets, method)(*args)
            else:
                raise ValueError(f"unknown call {method!r}")
        except Exception as error:  # the caller gets the failure; the hub goes on
            return orjson.dumps({"t": "ret", "id": call_id, "err": type(error).__name__}) + b"\n"
        return orjson.dumps({"t": "ret", "id": call_id, "v": value}) + b"\n"


class HubThread:
    """The hub, served from a thread of the supervising process, on a socket in a private
    directory (mode 0700: only this user's processes may connect), removed on stop unless
    it was given (``directory``: where a test restarts a hub)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own_directory = directory is None
        self._dir = directory or Path(tempfile.mkdtemp(prefix="directo-hub-"))
        self.path = self._dir / "hub.sock"
        self._hub = Hub()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="directo-hub", daemon=True)

    def start(self) -> HubThread:
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():  # stopped already
            return
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._hub.close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if self._own_directory:
            shutil.rmtree(self._dir, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._hub.serve(self.path))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()
