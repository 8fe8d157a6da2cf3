"""Rate limits: the ``limits`` library's strategies over memory (one process) or Redis (every
process shares one budget), and the 429 answer with ``Retry-After``."""

from __future__ import annotations

import time

from limits import RateLimitItem
from limits.aio.strategies import RateLimiter

from directo.core.errors import TooMany


async def refuse(limiter: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...],
                 message: str) -> TooMany:
    """The 429 for a spent budget, saying when it refills."""
    stats = await limiter.get_window_stats(item, *identifiers)
    return TooMany(message, retry_after=int(stats.reset_time - time.time()) + 1)


async def spend(limiter: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...],
                message: str) -> None:
    """Take one from the budget, or raise the 429."""
    if not await limiter.hit(item, *identifiers):
        raise await refuse(limiter, item, identifiers, message)
