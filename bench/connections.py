"""connections: idle WebSocket streams held by the server. They are opened in batches
(spread over a hundred accounts and over the processes) until done or until an upgrade is
refused or takes over 30 s; held past a catch-up period, then counted. The server's RSS growth
per stream and its CPU while merely holding them are compared with the baseline's idle
WebSockets. The full garbage collections the server ran meanwhile (each stops its event loop
for as long as it walks every object not frozen at start-up) are read from its ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import ConnectionPool, IdleWebSocket, http_request, open_idle_websocket
from bench.seed import Seeder
from bench.server import HOST, Deployment, ServerProcess

ACCOUNTS = 100
BATCH = 250
HOLD_SECONDS = 7  # past Directo's 5 s catch-up period, so every stream has woken once
RSS_TARGET_MIB = 1024
FULL = 10_000

Opener = Callable[[int], Awaitable[IdleWebSocket]]


class Measured(Protocol):
    def rss_kib(self) -> int: ...
    def cpu_seconds(self) -> float: ...


@dataclass
class Holding:
    sockets: list[IdleWebSocket]
    refused: int
    kib_per_stream: float
    still_open: int
    hold_cpu_share: float


async def hold(count: int, open_one: Opener, server: Measured) -> Holding:
    """Open up to ``count`` idle streams in batches, stopping at the first batch with a
    refused or timed-out upgrade; hold them, then measure."""
    before = server.rss_kib()
    sockets: list[IdleWebSocket] = []
    refused = 0
    for start in range(0, count, BATCH):
        opened = await asyncio.gather(*(open_one(n)
                                        for n in range(start, min(count, start + BATCH))),
                                      return_exceptions=True)
        for outcome in opened:
            if isinstance(outcome, IdleWebSocket):
                sockets.append(outcome)
            else:
                refused += 1
        if refused:
            break
    cpu_before = server.cpu_seconds()
    await asyncio.sleep(HOLD_SECONDS)
    share = (server.cpu_seconds() - cpu_before) / HOLD_SECONDS
    per_stream = (server.rss_kib() - before) / max(len(sockets), 1)
    return Holding(sockets, refused, per_stream, sum(ws.open for ws in sockets), share)


def seed_stream_owners(deployment: Deployment) -> list[str]:
    """The session tokens of ``ACCOUNTS`` accounts, to spread the streams over."""
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        ids = seeder.accounts(conn, [f"idle{n}" for n in range(ACCOUNTS)])
        return list(seeder.sessions(conn, ids).values())


async def full_collections(server: ServerProcess) -> tuple[int, float]:
    """How many full (generation 2) collections the server ran, and their total pause."""
    pool = ConnectionPool(HOST, server.port)
    try:
        status, body = await pool.request(http_request("GET", "/metrics",
                                                       f"{HOST}:{server.port}"))
    finally:
        pool.close()
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    samples = {sample.name: sample.value
               for family in text_string_to_metric_families(body.decode())
               for sample in family.samples if sample.labels.get("generation") == "2"}
    return (int(samples["directo_gc_pause_seconds_count"]),
            samples["directo_gc_pause_seconds_sum"])


def close_all(sockets: list[IdleWebSocket]) -> None:
    for ws in sockets:
        if ws.transport is not None:
            ws.transport.close()


async def run(ctx: Context) -> list[Figure]:
    count = ctx.sized(FULL, 1_000)
    baseline_port = ctx.baseline.port

    async def open_baseline(_: int) -> IdleWebSocket:
        return await open_idle_websocket(HOST, baseline_port, "/stream")

    baseline = await hold(count, open_baseline, ctx.baseline)
    close_all(baseline.sockets)

    deployment = ctx.deployment("connections")
    tokens = seed_stream_owners(deployment)
    deployment.start()
    try:
        idle_rss = deployment.rss_kib()

        async def open_directo(n: int) -> IdleWebSocket:
            server = deployment.server_for(n)
            return await open_idle_websocket(HOST, server.port, "/api/v1/stream",
                                             tokens[n % ACCOUNTS])

        directo = await hold(count, open_directo, deployment)
        total_mib = deployment.rss_kib() / 1024
        collections = [await full_collections(server) for server in deployment.servers]
        close_all(directo.sockets)
    finally:
        deployment.close()
    projected_mib = (idle_rss + directo.kib_per_stream * FULL) / 1024
    ctx.details["connections"] = {
        "asked": count, "idle_rss_kib": idle_rss, "rss_mib_with_streams": round(total_mib, 1),
        "projected_rss_mib_at_10000": round(projected_mib, 1),
        **{system: {key: value for key, value in vars(holding).items() if key != "sockets"}
           for system, holding in (("directo", directo), ("baseline", baseline))}}
    held = len(directo.sockets)
    full_gcs = sum(number for number, _ in collections)
    ctx.details["connections"]["full_collections"] = [
        {"count": number, "seconds": round(seconds, 4)} for number, seconds in collections]
    figures = [
        Figure("connections", f"streams open after {HOLD_SECONDS} s (of {count:,} asked)",
               directo.still_open, "streams", baseline.still_open, Target(">=", count)),
        Figure("connections", "RSS per idle stream", directo.kib_per_stream, "KiB",
               baseline.kib_per_stream),
        Figure("connections", f"server CPU holding {held:,} idle streams",
               directo.hold_cpu_share * 100, "% of a core", baseline.hold_cpu_share * 100),
        Figure("connections", f"server RSS with {held:,} streams", total_mib, "MiB", None,
               Target("<", RSS_TARGET_MIB) if held == FULL else None),
        Figure("connections", f"full GC collections while opening and holding {held:,}",
               full_gcs, "collections", None),
        Figure("connections", "mean full GC pause (the loop stands still)",
               sum(seconds for _, seconds in collections) / max(full_gcs, 1) * 1000, "ms",
               None),
    ]
    if held != FULL:
        figures.append(Figure("connections", f"server RSS projected to {FULL:,}",
                              projected_mib, "MiB", None, Target("<", RSS_TARGET_MIB)))
    return figures
