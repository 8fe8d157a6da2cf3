"""Rate limits: the ``limits`` library's strategies over memory (one process) or Redis (every
process shares one budget), and the 429 answer with ``Retry-After``."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItem
from limits.aio.strategies import RateLimiter
from limits.errors import StorageError

from directo.core.errors import TooMany

log = logging.getLogger("directo.ratelimit")
_warned_at = -60.0


async def refuse(limiter: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...],
                 message: str) -> TooMany:
    """The 429 for a spent budget, saying when it refills."""
    stats = await limiter.get_window_stats(item, *identifiers)
    return TooMany(message, retry_after=int(stats.reset_time - time.time()) + 1)


# While the shared storage (Redis) is unreachable, budgets are not enforced: sending and
# logging in never depend on Redis. Each outage is logged, at most once a minute.

async def _allowed(ask: Callable[..., Awaitable[bool]], item: RateLimitItem,
                   identifiers: tuple[str, ...]) -> bool:
    try:
        return await ask(item, *identifiers)
    except StorageError as error:
        _warn_unenforced(error)
        return True


async def spend(limiter: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...],
                message: str) -> None:
    """Take one from the budget, or raise the 429."""
    if not await _allowed(limiter.hit, item, identifiers):
        raise await refuse(limiter, item, identifiers, message)


async def check(limiter: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...],
                message: str) -> None:
    """Raise the 429 if the budget is spent, without taking from it."""
    if not await _allowed(limiter.test, item, identifiers):
        raise await refuse(limiter, item, identifiers, message)


async def record(limiter: RateLimiter, item: RateLimitItem,
                 identifiers: tuple[str, ...]) -> None:
    """Take one from the budget without refusing anything (a failed login, say)."""
    await _allowed(limiter.hit, item, identifiers)


def _warn_unenforced(error: StorageError) -> None:
    """At most one warning a minute, however many requests pass unchecked meanwhile."""
    global _warned_at
    if time.monotonic() - _warned_at >= 60:
        _warned_at = time.monotonic()
        log.warning("rate limit storage unavailable, limits not enforced: %s",
                    type(error.storage_error).__name__)
