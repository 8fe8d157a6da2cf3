"""growth: the cost of sending and of listing a conversation's latest messages with 10k, 100k
and 1M messages (and their events) already stored, seeded in bulk over a hundred
conversations; flat means the largest size costs what the smallest does."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import HttpConnection, LoadResult, closed_loop, http_request
from bench.seed import Seeder, seed_pairs
from bench.send import message_request, run_baseline
from bench.server import HOST

PAIRS = 100
SENDERS = 20
FLAT = Target("<", 1.5)  # the largest size may cost at most half as much again


@dataclass
class Size:
    first_send_seconds: float
    sends: LoadResult
    lists: LoadResult


async def first_answer(port: int, request: bytes) -> float:
    """Seconds until one request is answered: right after start, what the first user waits
    (the writer may be busy with start-up work), and a warm-up for what follows."""
    conn = await HttpConnection.open(HOST, port)
    began = time.perf_counter()
    await conn.request(request)
    conn.close()
    return time.perf_counter() - began


async def measure_size(ctx: Context, stored: int, seconds: float) -> Size:
    """The first send after start, sends by SENDERS closed-loop senders, and one reader
    listing the latest 50 messages."""
    deployment = ctx.deployment(f"growth-{stored}")
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        pairs = seed_pairs(seeder, conn, PAIRS)
        seeder.messages(conn, pairs.conversations, stored)
    deployment.start()
    try:
        targets = []
        for n in range(SENDERS):
            server = deployment.server_for(n)
            path = f"/api/v1/conversations/{pairs.conversations[n].id}/messages"
            targets.append((HOST, server.port, message_request(
                f"{HOST}:{server.port}", path, pairs.tokens[pairs.senders[n]], f"g{n}")))
        first = await first_answer(targets[0][1], targets[0][2](-1))
        sends = await closed_loop(targets, seconds, server_cpu=deployment.cpu_seconds)
        reader = deployment.server_for(0)
        listing = http_request(
            "GET", f"/api/v1/conversations/{pairs.conversations[-1].id}/messages?limit=50",
            f"{HOST}:{reader.port}", None, pairs.tokens[pairs.receivers[-1]])
        lists = await closed_loop([(HOST, reader.port, lambda _: listing)], seconds)
    finally:
        deployment.close()
    return Size(first, sends, lists)


async def run(ctx: Context) -> list[Figure]:
    sizes = (10_000, 100_000) if ctx.quick else (10_000, 100_000, 1_000_000)
    seconds = ctx.sized(5, 3)
    baseline_send = await run_baseline(ctx, SENDERS, seconds)
    baseline_page = await closed_loop(
        [(HOST, ctx.baseline.port, lambda _: http_request(
            "GET", "/page", f"{HOST}:{ctx.baseline.port}"))], seconds)
    figures: list[Figure] = []
    measured: dict[int, Size] = {}
    for stored in sizes:
        size = measured[stored] = await measure_size(ctx, stored, seconds)
        sends, lists = size.sends, size.lists
        label = f"{stored:,} stored"
        figures += [
            Figure("growth", f"first send after start, {label}",
                   size.first_send_seconds * 1000, "ms"),
            Figure("growth", f"send throughput, {label}", sends.throughput, "msg/s",
                   baseline_send.throughput),
            Figure("growth", f"send server CPU per message, {label}",
                   sends.summary()["server_cpu_us_per_request"], "µs",
                   baseline_send.summary()["server_cpu_us_per_request"]),
            Figure("growth", f"list 50 messages p50, {label}", lists.ms(50), "ms",
                   baseline_page.ms(50)),
        ]
    small, large = measured[sizes[0]], measured[sizes[-1]]
    span = f"{sizes[-1]:,} / {sizes[0]:,}"
    figures += [
        Figure("growth", f"send CPU per message, {span}",
               large.sends.summary()["server_cpu_us_per_request"]
               / small.sends.summary()["server_cpu_us_per_request"], "times", None, FLAT),
        Figure("growth", f"list p50, {span}", large.lists.ms(50) / small.lists.ms(50), "times",
               None, FLAT),
    ]
    ctx.details["growth"] = {
        str(stored): {"first_send_ms": round(size.first_send_seconds * 1000, 2),
                      "send": size.sends.summary(), "list": size.lists.summary()}
        for stored, size in measured.items()}
    ctx.details["growth"]["baseline"] = {"send": baseline_send.summary(),
                                         "page": baseline_page.summary()}
    return figures
