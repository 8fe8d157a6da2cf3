"""send: N concurrent senders in a closed loop, 100-byte texts, each sender in its own
conversation; against the baseline's bare ``POST /send`` with the same body."""

from __future__ import annotations

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import LoadResult, RequestFactory, closed_loop, http_request
from bench.seed import Seeder, seed_pairs
from bench.server import HOST, Deployment

SENDERS = (1, 20, 50)
TEXT = "x" * 100
THROUGHPUT_TARGET = Target(">=", 3000)
P99_TARGET = Target("<", 50)
TARGETED_SENDERS = 20


def message_request(host: str, path: str, token: str | None, tag: str) -> RequestFactory:
    """Send requests for one sender: a fresh ``client_id`` each time, a 100-byte text."""
    def make(number: int) -> bytes:
        return http_request("POST", path, host, {"client_id": f"{tag}-{number}", "text": TEXT},
                            token)

    return make


async def run_baseline(ctx: Context, senders: int, seconds: float) -> LoadResult:
    host = f"{HOST}:{ctx.baseline.port}"
    targets = [(HOST, ctx.baseline.port, message_request(host, "/send", None, f"b{senders}-{n}"))
               for n in range(senders)]
    return await closed_loop(targets, seconds, server_cpu=ctx.baseline.cpu_seconds)


def _group_commits(deployment: Deployment) -> tuple[float, float] | None:
    """SQLite's group commits so far, as (writes, commits), from the server's metrics (all
    its workers'); None on PostgreSQL, which commits each write on its own."""
    if deployment.backend != "sqlite":
        return None
    writes, commits = "directo_commit_batch_jobs_sum", "directo_commit_batch_jobs_count"
    found = deployment.servers[0].metrics(writes, commits)
    return (found[writes], found[commits]) if len(found) == 2 else None


def _per_commit(before: tuple[float, float] | None,
                after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


async def run(ctx: Context) -> list[Figure]:
    seconds = ctx.sized(10, 3)
    deployment = ctx.deployment("send")
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        pairs = seed_pairs(seeder, conn, max(SENDERS))
    deployment.start()
    figures, details = [], {}
    try:
        for senders in SENDERS:
            baseline = await run_baseline(ctx, senders, seconds)
            targets = []
            for n in range(senders):
                server = deployment.server_for(n)
                path = f"/api/v1/conversations/{pairs.conversations[n].id}/messages"
                token = pairs.tokens[pairs.senders[n]]
                targets.append((HOST, server.port, message_request(
                    f"{HOST}:{server.port}", path, token, f"d{senders}-{n}")))
            commits_before = _group_commits(deployment)
            directo = await closed_loop(targets, seconds, server_cpu=deployment.cpu_seconds)
            per_commit = _per_commit(commits_before, _group_commits(deployment))
            details[f"{senders}_senders"] = {"directo": directo.summary(),
                                             "baseline": baseline.summary()}
            targeted = senders == TARGETED_SENDERS
            figures += [
                Figure("send", f"throughput, {senders} senders", directo.throughput, "msg/s",
                       baseline.throughput, THROUGHPUT_TARGET if targeted else None),
                Figure("send", f"p99, {senders} senders", directo.ms(99), "ms",
                       baseline.ms(99), P99_TARGET if targeted else None),
                Figure("send", f"server CPU per send, {senders} senders",
                       directo.summary()["server_cpu_us_per_request"], "µs",
                       baseline.summary()["server_cpu_us_per_request"]),
            ]
            if per_commit is not None:
                figures.append(Figure("send", f"sends per group commit, {senders} senders",
                                      per_commit, "sends"))
            if targeted:
                figures.append(Figure("send", f"load client CPU, {senders} senders",
                                      directo.client_cpu_share * 100, "% of a core",
                                      baseline.client_cpu_share * 100))
            if directo.errors:
                figures.append(Figure("send", f"errors, {senders} senders", directo.errors,
                                      "requests", None, Target("<", 1)))
    finally:
        deployment.close()
    ctx.details["send"] = details
    return figures
