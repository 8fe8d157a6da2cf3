"""growth: the cost of sending and of listing a conversation's latest messages with 10k, 100k
and 1M messages (and their events) already stored, seeded in bulk over a hundred
conversations; flat means the largest size costs what the smallest does."""

from __future__ import annotations

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import LoadResult, closed_loop, http_request
from bench.seed import Seeder, seed_pairs
from bench.send import message_request, run_baseline
from bench.server import HOST

PAIRS = 100
SENDERS = 20
FLAT = Target("<", 1.5)  # the largest size may cost at most half as much again


async def measure_size(ctx: Context, stored: int, seconds: float,
                       ) -> tuple[LoadResult, LoadResult]:
    """(sends by SENDERS closed-loop senders, one reader listing the latest 50 messages)."""
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
        sends = await closed_loop(targets, seconds, server_cpu=deployment.cpu_seconds)
        reader = deployment.server_for(0)
        listing = http_request(
            "GET", f"/api/v1/conversations/{pairs.conversations[-1].id}/messages?limit=50",
            f"{HOST}:{reader.port}", None, pairs.tokens[pairs.receivers[-1]])
        lists = await closed_loop([(HOST, reader.port, lambda _: listing)], seconds)
    finally:
        deployment.close()
    return sends, lists


async def run(ctx: Context) -> list[Figure]:
    sizes = (10_000, 100_000) if ctx.quick else (10_000, 100_000, 1_000_000)
    seconds = ctx.sized(5, 3)
    baseline_send = await run_baseline(ctx, SENDERS, seconds)
    baseline_page = await closed_loop(
        [(HOST, ctx.baseline.port, lambda _: http_request(
            "GET", "/page", f"{HOST}:{ctx.baseline.port}"))], seconds)
    figures: list[Figure] = []
    measured: dict[int, tuple[LoadResult, LoadResult]] = {}
    for stored in sizes:
        sends, lists = measured[stored] = await measure_size(ctx, stored, seconds)
        label = f"{stored:,} stored"
        figures += [
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
               large[0].summary()["server_cpu_us_per_request"]
               / small[0].summary()["server_cpu_us_per_request"], "times", None, FLAT),
        Figure("growth", f"list p50, {span}", large[1].ms(50) / small[1].ms(50), "times", None,
               FLAT),
    ]
    ctx.details["growth"] = {
        str(stored): {"send": sends.summary(), "list": lists.summary()}
        for stored, (sends, lists) in measured.items()}
    ctx.details["growth"]["baseline"] = {"send": baseline_send.summary(),
                                         "page": baseline_page.summary()}
    return figures
