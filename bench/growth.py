"""growth: the cost of sending and of listing a conversation's latest messages with 10k, 100k
and 1M messages (and their events) already stored, seeded in bulk over a hundred
conversations; flat means the largest size costs what the smallest does.

Sizes are measured minutes apart (seeding a million messages takes a while), and this
shared machine's speed drifts by half in that time: the same send cost 0.96x and 1.56x as
much CPU at 100k as at 10k in two back-to-back runs. So each size is measured beside a
baseline of its own, and growth compares Directo's cost relative to that baseline: the
baseline's cost does not depend on what Directo stores, so its change is the machine's."""

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
    baseline_sends: LoadResult
    baseline_pages: LoadResult

    def send_cost(self) -> float:
        """Server CPU per message, relative to the baseline's at the same time."""
        return (self.sends.summary()["server_cpu_us_per_request"]
                / self.baseline_sends.summary()["server_cpu_us_per_request"])

    def list_cost(self) -> float:
        """Server CPU per list, relative to the baseline page's at the same time (CPU, not
        p50: a 3-5 s window's median latency swung by half between runs at one size)."""
        return (self.lists.summary()["server_cpu_us_per_request"]
                / self.baseline_pages.summary()["server_cpu_us_per_request"])


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
        baseline_sends = await run_baseline(ctx, SENDERS, seconds)
        sends = await closed_loop(targets, seconds, server_cpu=deployment.cpu_seconds)
        reader = deployment.server_for(0)
        listing = http_request(
            "GET", f"/api/v1/conversations/{pairs.conversations[-1].id}/messages?limit=50",
            f"{HOST}:{reader.port}", None, pairs.tokens[pairs.receivers[-1]])
        baseline_pages = await closed_loop(
            [(HOST, ctx.baseline.port, lambda _: http_request(
                "GET", "/page", f"{HOST}:{ctx.baseline.port}"))], seconds,
            server_cpu=ctx.baseline.cpu_seconds)
        lists = await closed_loop([(HOST, reader.port, lambda _: listing)], seconds,
                                  server_cpu=deployment.cpu_seconds)
    finally:
        deployment.close()
    return Size(first, sends, lists, baseline_sends, baseline_pages)


async def run(ctx: Context) -> list[Figure]:
    sizes = (10_000, 100_000) if ctx.quick else (10_000, 100_000, 1_000_000)
    seconds = ctx.sized(5, 3)
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
                   size.baseline_sends.throughput),
            Figure("growth", f"send server CPU per message, {label}",
                   sends.summary()["server_cpu_us_per_request"], "µs",
                   size.baseline_sends.summary()["server_cpu_us_per_request"]),
            Figure("growth", f"list 50 messages p50, {label}", lists.ms(50), "ms",
                   size.baseline_pages.ms(50)),
            Figure("growth", f"list server CPU per request, {label}",
                   lists.summary()["server_cpu_us_per_request"], "µs",
                   size.baseline_pages.summary()["server_cpu_us_per_request"]),
        ]
    small, large = measured[sizes[0]], measured[sizes[-1]]
    span = f"{sizes[-1]:,} / {sizes[0]:,}, each against its baseline"
    figures += [
        Figure("growth", f"send CPU per message, {span}",
               large.send_cost() / small.send_cost(), "times", None, FLAT),
        Figure("growth", f"list CPU per request, {span}",
               large.list_cost() / small.list_cost(), "times", None, FLAT),
    ]
    ctx.details["growth"] = {
        str(stored): {"first_send_ms": round(size.first_send_seconds * 1000, 2),
                      "send": size.sends.summary(), "list": size.lists.summary(),
                      "baseline_send": size.baseline_sends.summary(),
                      "baseline_page": size.baseline_pages.summary()}
        for stored, size in measured.items()}
    return figures
