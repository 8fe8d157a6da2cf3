"""resume: a receiver was offline while N message events piled up on its stream (seeded in
bulk); it reconnects with its old cursor, and we time the WebSocket from connect to ``ready``,
counting the events that arrived first. Baseline: a WebSocket that sends N frames of the
same size, then ``ready``."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import websockets

from bench.context import Context
from bench.figures import Figure, Target
from bench.seed import Seeder, seed_pairs
from bench.server import HOST
from directo.events.service import encode_cursor

TARGET = Target("<", 1000)
REPEATS = 3
BACKLOG = 10_000


@dataclass
class Catchup:
    seconds: float
    frames: int
    frame_bytes: int
    client_cpu_seconds: float


async def catch_up(url: str, headers: dict[str, str]) -> Catchup:
    """Connect, read until ``ready``; how long it took and how many frames came first."""
    frames = size = 0
    began, cpu_began = time.perf_counter(), time.process_time()
    async with websockets.connect(url, additional_headers=headers, max_size=2**24) as ws:
        async for raw in ws:
            if '"type":"ready"' in str(raw)[:200]:
                break
            frames += 1
            size += len(raw)
    return Catchup(time.perf_counter() - began, frames, size // max(frames, 1),
                   time.process_time() - cpu_began)


async def repeated(url: str, headers: dict[str, str]) -> list[Catchup]:
    return [await catch_up(url, headers) for _ in range(REPEATS)]


async def run(ctx: Context) -> list[Figure]:
    backlog = BACKLOG
    deployment = ctx.deployment("resume")
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        pairs = seed_pairs(seeder, conn, 1)
        seeder.messages(conn, pairs.conversations, backlog)
    deployment.start()
    try:
        server = deployment.server_for(0)
        url = f"ws://{HOST}:{server.port}/api/v1/stream?after={encode_cursor(0)}"
        token = pairs.tokens[pairs.receivers[0]]
        directo = await repeated(url, {"Authorization": f"Bearer {token}"})
    finally:
        deployment.close()
    frame_bytes = directo[0].frame_bytes
    baseline = await repeated(f"ws://{HOST}:{ctx.baseline.port}/stream?backlog={backlog}"
                              f"&frame_bytes={frame_bytes}", {})
    ctx.details["resume"] = {system: [vars(c) for c in runs]
                             for system, runs in (("directo", directo), ("baseline", baseline))}

    def median_ms(runs: list[Catchup]) -> float:
        return statistics.median(c.seconds for c in runs) * 1000

    def client_share(runs: list[Catchup]) -> float:
        return sum(c.client_cpu_seconds for c in runs) / sum(c.seconds for c in runs) * 100

    return [
        Figure("resume", f"{backlog:,} events: connect to ready (median of {REPEATS})",
               median_ms(directo), "ms", median_ms(baseline), TARGET),
        Figure("resume", "events received before ready", min(c.frames for c in directo),
               "events", min(c.frames for c in baseline), Target(">=", backlog)),
        Figure("resume", "load client CPU", client_share(directo), "% of a core",
               client_share(baseline)),
    ]
