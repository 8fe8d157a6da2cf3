"""Wake-ups for event-stream subscribers. The database is the source of truth: a broker only
says "account X has something new" (or carries an ephemeral event such as typing), so a lost
notification costs latency, never an event.

``LocalBroker`` works inside one process. ``RedisBroker`` (core/redis_broker.py) carries the
same calls across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from typing import Any, NamedTuple

from cachetools import LRUCache

# "last seen" times kept in memory, the least recently used dropped first (about 100 MB at
# most): an account dropped here reads as never seen. Redis keeps its own, for 30 days.
LAST_SEEN_KEPT = 1_000_000


class Subscription:
    """One connected client: a signal, whether its streams grew, and pending ephemeral events."""

    def __init__(self, broker: LocalBroker, account_ids: frozenset[str]) -> None:
        self._broker = broker
        self.account_ids = account_ids
        self._signal = asyncio.Event()
        self._stream_changed = False
        self._ephemeral: deque[dict[str, Any]] = deque(maxlen=256)
        # how far its client has been given the stream; the catch-up compares it with the
        # database to find subscribers whose wake-up was lost
        self.position: int | None = None

    def close(self) -> None:
        self._broker.unsubscribe(self)

    def notify_stream(self) -> None:
        self._stream_changed = True
        self._signal.set()

    def notify_ephemeral(self, event: dict[str, Any]) -> None:
        self._ephemeral.append(event)
        self._signal.set()

    async def wait(self, timeout: float) -> None:
        """Return when something arrived, or after ``timeout`` seconds."""
        if not self._signal.is_set():
            # asyncio.timeout, not wait_for: wait_for runs the wait in a task of its own,
            # one more task per open stream and per wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._signal.wait()

    def take(self) -> tuple[bool, list[dict[str, Any]]]:
        """Whether the streams grew since the last take, and the ephemeral events waiting."""
        changed, self._stream_changed = self._stream_changed, False
        items = list(self._ephemeral)
        self._ephemeral.clear()
        self._signal.clear()
        return changed, items


class Presence(NamedTuple):
    """Whether an account has an open stream anywhere, and when it was last connected (unix
    seconds; now while online, None if never seen)."""

    online: bool
    last_seen: float | None


class LocalBroker:
    # In one process a wake-up cannot be lost (it is a flag on the subscription, set after
    # the commit and cleared only by the pusher that reads it), so an idle stream needs no
    # periodic re-read of the database; brokers that can lose one say so.
    loses_wakeups = False

    def __init__(self) -> None:
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._open_streams: Counter[str] = Counter()
        self._last_seen: LRUCache[str, float] = LRUCache(LAST_SEEN_KEPT)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def subscribe(self, account_ids: Iterable[str]) -> Subscription:
        sub = Subscription(self, frozenset(account_ids))
        for account_id in sub.account_ids:
            self._subs[account_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        for account_id in sub.account_ids:
            subs = self._subs.get(account_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[account_id]

    def positions(self) -> dict[str, int]:
        """For each account with a subscriber here, the lowest position handed out."""
        found: dict[str, int] = {}
        for account_id, subs in self._subs.items():
            known = [sub.position for sub in subs if sub.position is not None]
            if known:
                found[account_id] = min(known)
        return found

    @property
    def subscriber_count(self) -> int:
        return len({s for subs in self._subs.values() for s in subs})

    # -- called after commits (stream events) and by services (ephemeral events) --------------

    def publish(self, account_ids: set[str]) -> None:
        self.deliver_wake(account_ids)

    def publish_ephemeral(self, account_ids: set[str], event: dict[str, Any]) -> None:
        self.deliver_ephemeral(account_ids, event)

    # -- local delivery, also used by brokers that receive from elsewhere ---------------------

    def deliver_wake(self, account_ids: Iterable[str]) -> None:
        for account_id in account_ids:
            for sub in self._subs.get(account_id, ()):
                sub.notify_stream()

    def deliver_ephemeral(self, account_ids: Iterable[str], event: dict[str, Any]) -> None:
        seen: set[Subscription] = set()
        for account_id in account_ids:
            for sub in self._subs.get(account_id, ()):
                if sub not in seen:
                    seen.add(sub)
                    sub.notify_ephemeral(event)

    # -- presence: an account is online while it has an open stream ---------------------------

    def stream_opened(self, account_id: str) -> None:
        self._open_streams[account_id] += 1

    def stream_closed(self, account_id: str) -> None:
        self._open_streams[account_id] -= 1
        if self._open_streams[account_id] <= 0:
            del self._open_streams[account_id]
            self._last_seen[account_id] = time.time()

    async def presence(self, account_id: str) -> Presence:
        if account_id in self._open_streams:
            return Presence(True, time.time())
        return Presence(False, self._last_seen.get(account_id))
