"""connections: idle WebSocket streams held by the server. They are opened in batches
(spread over a hundred accounts and over the processes), held past a catch-up period, then
counted; the server's RSS growth per stream is compared with the baseline's idle WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import IdleWebSocket, open_idle_websocket
from bench.seed import Seeder
from bench.server import HOST

ACCOUNTS = 100
BATCH = 250
HOLD_SECONDS = 7  # past Directo's 5 s catch-up period, so every stream has woken once
RSS_TARGET_MIB = 1024
FULL = 10_000

Opener = Callable[[int], Awaitable[IdleWebSocket]]


async def hold(count: int, open_one: Opener, rss_kib: Callable[[], int],
               ) -> tuple[list[IdleWebSocket], float, int]:
    """Open ``count`` idle streams; (sockets, KiB of RSS each, streams still open after the
    hold)."""
    before = rss_kib()
    sockets: list[IdleWebSocket] = []
    for start in range(0, count, BATCH):
        sockets += await asyncio.gather(*(open_one(n)
                                          for n in range(start, min(count, start + BATCH))))
    await asyncio.sleep(HOLD_SECONDS)
    per_socket = (rss_kib() - before) / count
    return sockets, per_socket, sum(ws.open for ws in sockets)


def close_all(sockets: list[IdleWebSocket]) -> None:
    for ws in sockets:
        if ws.transport is not None:
            ws.transport.close()


async def run(ctx: Context) -> list[Figure]:
    count = ctx.sized(FULL, 1_000)
    baseline_port = ctx.baseline.port

    async def open_baseline(_: int) -> IdleWebSocket:
        return await open_idle_websocket(HOST, baseline_port, "/stream")

    sockets, baseline_kib, _ = await hold(count, open_baseline, ctx.baseline.rss_kib)
    close_all(sockets)

    deployment = ctx.deployment("connections")
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        ids = seeder.accounts(conn, [f"idle{n}" for n in range(ACCOUNTS)])
        tokens = list(seeder.sessions(conn, ids).values())
    deployment.start()
    try:
        idle_rss = deployment.rss_kib()

        async def open_directo(n: int) -> IdleWebSocket:
            server = deployment.server_for(n)
            return await open_idle_websocket(HOST, server.port, "/api/v1/stream",
                                             tokens[n % ACCOUNTS])

        sockets, directo_kib, still_open = await hold(count, open_directo,
                                                      deployment.rss_kib)
        total_mib = deployment.rss_kib() / 1024
        close_all(sockets)
    finally:
        deployment.close()
    projected_mib = (idle_rss + directo_kib * FULL) / 1024
    ctx.details["connections"] = {"streams": count, "idle_rss_kib": idle_rss,
                                  "kib_per_stream": round(directo_kib, 2),
                                  "baseline_kib_per_stream": round(baseline_kib, 2),
                                  "rss_mib_with_streams": round(total_mib, 1),
                                  "projected_rss_mib_at_10000": round(projected_mib, 1)}
    figures = [
        Figure("connections", f"streams open after {HOLD_SECONDS} s", still_open, "streams",
               None, Target(">=", count)),
        Figure("connections", "RSS per idle stream", directo_kib, "KiB", baseline_kib),
        Figure("connections", f"server RSS with {count:,} streams", total_mib, "MiB", None,
               Target("<", RSS_TARGET_MIB) if count == FULL else None),
    ]
    if count != FULL:
        figures.append(Figure("connections", f"server RSS projected to {FULL:,}",
                              projected_mib, "MiB", None, Target("<", RSS_TARGET_MIB)))
    return figures
