"""deliver: senders POST messages at a fixed total rate (open loop); each receiver holds a
WebSocket, and a message's latency runs from just before its POST to its frame's arrival.
The message number travels in the text. Baseline: ``POST /push`` forwarded to a WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import websockets

from bench.context import Context
from bench.figures import Figure, Target
from bench.load import ConnectionPool, HttpError, LoadResult, http_request, open_loop
from bench.seed import Pairs, Seeder, seed_pairs
from bench.server import HOST, Deployment

PAIRS = 10
RATE = 500
LIGHT_RATE = 100  # also well below capacity: delivery itself, without a send queue
P99_TARGET = Target("<", 20)
TextOf = Callable[[dict[str, Any]], str | None]


@dataclass
class Route:
    """One sender's way to one receiver: how to send a text, where the receiver listens."""

    pool: ConnectionPool
    request: Callable[[str], bytes]
    ws_url: str
    headers: dict[str, str]


def numbered_text(number: int) -> str:
    return f"{number:08d} ".ljust(100, "x")


@dataclass
class Delivery:
    delivered: LoadResult
    sent: LoadResult
    missing: int
    worst_lag_ms: float


async def measure(routes: list[Route], text_of: TextOf, rate: float,
                  seconds: float) -> Delivery:
    sent_at: dict[int, float] = {}
    delivered, sent = LoadResult(seconds=seconds), LoadResult(seconds=seconds)
    expected = int(rate * seconds)
    everything = asyncio.Event()

    async def receive(ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            text = text_of(orjson.loads(raw))
            if text is None:
                continue
            arrived = time.perf_counter()
            number = int(text[:8])
            delivered.latencies.append(arrived - sent_at[number])
            if len(delivered.latencies) == expected:
                everything.set()

    async def fire(number: int) -> None:
        route = routes[number % len(routes)]
        began = sent_at[number] = time.perf_counter()
        try:
            status, _ = await route.pool.request(route.request(numbered_text(number)))
        except HttpError:
            status = 0
        if status in (200, 201):
            sent.latencies.append(time.perf_counter() - began)
        else:
            sent.errors += 1

    sockets = [await websockets.connect(route.ws_url, additional_headers=route.headers,
                                        max_size=2**24) for route in routes]
    for ws in sockets:  # each stream first says it is live
        while orjson.loads(await ws.recv()).get("type") != "ready":
            pass
    readers = [asyncio.create_task(receive(ws)) for ws in sockets]
    try:
        cpu_start = time.process_time()
        lag = await open_loop(rate, seconds, fire)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everything.wait(), 10)
        delivered.client_cpu_seconds = time.process_time() - cpu_start
    finally:
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()
        for route in routes:
            route.pool.close()
    return Delivery(delivered, sent, expected - len(delivered.latencies), lag * 1000)


def directo_text(frame: dict[str, Any]) -> str | None:
    if frame.get("type") != "message.created":
        return None
    return str(frame["data"]["message"]["text"])


def baseline_text(frame: dict[str, Any]) -> str | None:
    return str(frame["data"]["text"]) if frame.get("type") == "message.created" else None


def baseline_routes(ctx: Context) -> list[Route]:
    port = ctx.one_process_baseline().port
    routes = []
    for n in range(PAIRS):
        def request(text: str, n: int = n) -> bytes:
            return http_request("POST", f"/push?channel={n}", f"{HOST}:{port}",
                                {"client_id": text[:8], "text": text})

        routes.append(Route(ConnectionPool(HOST, port), request,
                            f"ws://{HOST}:{port}/stream?channel={n}", {}))
    return routes


def directo_routes(deployment: Deployment, pairs: Pairs) -> list[Route]:
    routes = []
    for n in range(PAIRS):
        # on two processes the receiver listens on the other one: delivery crosses nodes
        sender, listener = deployment.server_for(n), deployment.server_for(n + 1)
        path = f"/api/v1/conversations/{pairs.conversations[n].id}/messages"
        token = pairs.tokens[pairs.senders[n]]

        def request(text: str, path: str = path, token: str = token,
                    port: int = sender.port) -> bytes:
            return http_request("POST", path, f"{HOST}:{port}",
                                {"client_id": f"{text[:8]}-{time.time_ns()}", "text": text},
                                token)

        routes.append(Route(ConnectionPool(HOST, sender.port), request,
                            f"ws://{HOST}:{listener.port}/api/v1/stream",
                            {"Authorization": f"Bearer {pairs.tokens[pairs.receivers[n]]}"}))
    return routes


async def run(ctx: Context) -> list[Figure]:
    seconds = ctx.sized(20, 5)
    deployment = ctx.deployment("deliver")
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        pairs = seed_pairs(seeder, conn, PAIRS)
    deployment.start()
    figures: list[Figure] = []
    try:
        for rate in (LIGHT_RATE, RATE):
            baseline = await measure(baseline_routes(ctx), baseline_text, rate, seconds)
            directo = await measure(directo_routes(deployment, pairs), directo_text, rate,
                                    seconds)
            figures += figures_at(rate, directo, baseline)
            ctx.details.setdefault("deliver", {})[f"{rate}_per_second"] = {
                system: {"delivery": d.delivered.summary(), "send": d.sent.summary(),
                         "missing": d.missing, "worst_start_lag_ms": round(d.worst_lag_ms, 2)}
                for system, d in (("directo", directo), ("baseline", baseline))}
    finally:
        deployment.close()
    return figures


def figures_at(rate: int, directo: Delivery, baseline: Delivery) -> list[Figure]:
    name = f"{rate} msg/s"
    return [
        Figure("deliver", f"p50, {name}", directo.delivered.ms(50), "ms",
               baseline.delivered.ms(50)),
        Figure("deliver", f"p99, {name}", directo.delivered.ms(99), "ms",
               baseline.delivered.ms(99), P99_TARGET if rate == RATE else None),
        Figure("deliver", f"messages not delivered, {name}", directo.missing, "msgs",
               baseline.missing, Target("<", 1)),
        Figure("deliver", f"send p99, {name}", directo.sent.ms(99), "ms",
               baseline.sent.ms(99)),
        Figure("deliver", f"load client CPU, {name}",
               directo.delivered.client_cpu_share * 100, "% of a core",
               baseline.delivered.client_cpu_share * 100),
    ]
