"""inbox: a brand with N open conversations (each with one unread customer message), seeded in
bulk; one agent lists the brand's inbox 20 at a time: the first page, and deep pages reached
with cursors at 10 %, 50 %, 90 % and 99 % of the queue. Baseline: ``GET /page``, a constant
JSON page of about the same size."""

from __future__ import annotations

import httpx
from sqlalchemy import create_engine, select

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import LoadResult, closed_loop, http_request
from bench.seed import Seeder
from bench.server import HOST, ServerProcess
from directo.conversations.store import participants
from directo.core import cursors

P99_TARGET = Target("<", 20)
PAGE = 20
AGENTS = 20  # agents of one brand reading its inbox at once
DEPTHS = (0.1, 0.5, 0.9, 0.99)
BRAND = "brand0"


def deep_cursors(database_url: str, brand_id: str, total: int) -> list[str]:
    """Cursors as the server would issue them, positioned deep in the brand's queue."""
    engine = create_engine(database_url)
    p = participants
    found = []
    with engine.connect() as conn:
        for depth in DEPTHS:
            row = conn.execute(select(p.c.pinned, p.c.sort_at, p.c.conversation_id)
                               .where(p.c.account_id == brand_id)
                               .order_by(p.c.sort_at.desc(), p.c.conversation_id.desc())
                               .offset(int(total * depth)).limit(1)).one()
            found.append(cursors.encode("conversations", [row.pinned, row.sort_at,
                                                          row.conversation_id]))
    engine.dispose()
    return found


def check_pages(server: ServerProcess, token: str, paths: list[str]) -> None:
    """Every page we time must be a full page of the brand's inbox."""
    for path in paths:
        page = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}).json()
        if len(page.get("items", [])) != PAGE:
            raise RuntimeError(f"inbox page {path} is not full: {str(page)[:300]}")


async def timed(servers: list[ServerProcess], paths: list[str], token: str | None,
                seconds: float, agents: int = 1) -> LoadResult:
    """``agents`` agents (spread over the servers), each asking for the pages in turn, each
    as soon as its last was answered."""
    targets = []
    for number in range(agents):
        server = servers[number % len(servers)]
        host = f"{HOST}:{server.port}"
        requests = [http_request("GET", path, host, None, token) for path in paths]
        targets.append((HOST, server.port,
                        lambda n, requests=requests: requests[n % len(requests)]))
    return await closed_loop(targets, seconds)


async def run(ctx: Context) -> list[Figure]:
    total = ctx.sized(1_000_000, 100_000)
    seconds = ctx.sized(10, 3)
    deployment = ctx.deployment("inbox")
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        brand_id = seeder.accounts(conn, [BRAND], kind="brand")[0]
        token = seeder.sessions(conn, [brand_id])[brand_id]
        customers = seeder.accounts(conn, [f"customer{n}" for n in range(total)])
        seeder.conversations(conn, [(customer, brand_id) for customer in customers],
                             with_message=True)
    listing = f"/api/v1/conversations?as={BRAND}&folder=inbox&limit={PAGE}"
    deep = [f"{listing}&cursor={cursor}"
            for cursor in deep_cursors(deployment.database_url, brand_id, total)]
    deployment.start()
    try:
        servers = deployment.servers
        check_pages(servers[0], token, [listing, *deep])
        first = await timed(servers, [listing], token, seconds)
        deeper = await timed(servers, deep, token, seconds)
        crowd = await timed(servers, [listing, *deep], token, seconds, AGENTS)
    finally:
        deployment.close()
    baseline = await timed([ctx.baseline], ["/page"], None, seconds)
    crowd_baseline = await timed([ctx.baseline], ["/page"], None, seconds, AGENTS)
    ctx.details["inbox"] = {"conversations": total, "first_page": first.summary(),
                            "deep_pages": deeper.summary(), "baseline": baseline.summary(),
                            f"{AGENTS}_agents": crowd.summary(),
                            f"{AGENTS}_agents_baseline": crowd_baseline.summary()}
    size = f"{total:,} conversations"
    return [
        Figure("inbox", f"first page p50, {size}", first.ms(50), "ms", baseline.ms(50)),
        Figure("inbox", f"first page p99, {size}", first.ms(99), "ms", baseline.ms(99),
               P99_TARGET),
        Figure("inbox", f"deep pages p50, {size}", deeper.ms(50), "ms", baseline.ms(50)),
        Figure("inbox", f"deep pages p99, {size}", deeper.ms(99), "ms", baseline.ms(99),
               P99_TARGET),
        Figure("inbox", "pages per second, one agent", first.throughput, "pages/s",
               baseline.throughput),
        Figure("inbox", f"pages per second, {AGENTS} agents", crowd.throughput, "pages/s",
               crowd_baseline.throughput),
        Figure("inbox", f"p99, {AGENTS} agents", crowd.ms(99), "ms", crowd_baseline.ms(99)),
    ]
