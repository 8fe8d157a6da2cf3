"""The benchmark harness at its tiniest: the load client against the baseline app, seeded data
served by a real ``directo serve``, and the shape of the results file. No timing assertions:
only that the harness measures what it claims to and writes well-formed results."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from bench.__main__ import parse
from bench.compare import compare
from bench.connections import full_collections
from bench.figures import Figure, Run, Target
from bench.load import (
    ConnectionPool,
    closed_loop,
    http_request,
    open_idle_websocket,
    open_loop,
    percentile,
)
from bench.seed import TEXT, Seeder, seed_pairs
from bench.send import message_request
from bench.server import HOST, ROOT, Deployment, ServerProcess, _rss_kib, start_baseline
from tests.conftest import need, postgres_available


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_baseline(tmp_path_factory.mktemp("baseline"))
    yield server
    server.stop()


async def test_closed_loop_counts_answered_requests(baseline: ServerProcess) -> None:
    host = f"{HOST}:{baseline.port}"
    targets = [(HOST, baseline.port, message_request(host, "/send", None, f"t{n}"))
               for n in range(2)]
    result = await closed_loop(targets, 0.5, warmup=0.1, server_cpu=baseline.cpu_seconds)
    summary = result.summary()
    assert summary["requests"] > 0 and summary["errors"] == 0
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert summary["throughput"] == pytest.approx(summary["requests"] / 0.5, rel=0.01)
    assert result.client_cpu_seconds > 0 and result.server_cpu_seconds >= 0


async def test_closed_loop_counts_refusals_as_errors(baseline: ServerProcess) -> None:
    host = f"{HOST}:{baseline.port}"
    refused = http_request("POST", "/send", host, {"client_id": "", "text": ""})
    result = await closed_loop([(HOST, baseline.port, lambda _: refused)], 0.3, warmup=0)
    assert result.errors > 0 and not result.latencies


async def test_open_loop_fires_every_scheduled_request(baseline: ServerProcess) -> None:
    pool = ConnectionPool(HOST, baseline.port)
    answers: list[int] = []

    async def fire(number: int) -> None:
        status, _ = await pool.request(message_request(
            f"{HOST}:{baseline.port}", "/send", None, "o")(number))
        answers.append(status)

    lag = await open_loop(40, 0.5, fire)
    pool.close()
    assert answers == [201] * 20 and lag >= 0


async def test_idle_websockets_stay_open(baseline: ServerProcess) -> None:
    sockets = [await open_idle_websocket(HOST, baseline.port, "/stream") for _ in range(3)]
    assert all(ws.open for ws in sockets)
    for ws in sockets:
        assert ws.transport is not None
        ws.transport.close()


async def test_idle_websockets_answer_pings() -> None:
    """A server that pings every 0.1 s drops a client that does not answer within 0.3 s."""
    async def handler(ws: websockets.ServerConnection) -> None:
        await ws.send("hello " * 30)  # a data frame first, ignored by the idle client
        await ws.wait_closed()

    async with websockets.serve(handler, HOST, 0, ping_interval=0.1, ping_timeout=0.3) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        idle = await open_idle_websocket(HOST, port, "/")
        await asyncio.sleep(1.0)
        assert idle.open
        assert idle.transport is not None
        idle.transport.close()


async def test_seeded_conversations_are_served_decrypted(tmp_path: Path) -> None:
    deployment = Deployment.prepare("sqlite", tmp_path)
    seeder = Seeder(deployment.database_url, deployment.keyring)
    with seeder.connect() as conn:
        pairs = seed_pairs(seeder, conn, 2)
        seeder.messages(conn, pairs.conversations, 7)
    deployment.start()
    try:
        server = deployment.server_for(0)
        headers = {"Authorization": f"Bearer {pairs.tokens[pairs.receivers[0]]}"}
        conversation = pairs.conversations[0].id
        page = httpx.get(f"{server.url}/api/v1/conversations/{conversation}/messages",
                         headers=headers).json()
        assert [m["text"] for m in page["items"]] == [TEXT] * 4  # 7 spread over 2
        listed = httpx.get(f"{server.url}/api/v1/conversations", headers=headers).json()
        assert [c["id"] for c in listed["items"]] == [conversation]
        assert deployment.rss_kib() > 0 and deployment.cpu_seconds() > 0
        # the collection that precedes the start-up freeze is the first one counted
        count, seconds = await full_collections(server)
        assert count >= 1 and seconds > 0
    finally:
        deployment.close()


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([], 99) == 0 and percentile([7.0], 99) == 7


def test_results_file_shape(tmp_path: Path) -> None:
    run = Run(backend="sqlite", quick=True)
    run.figures += [Figure("send", "throughput", 300.0, "msg/s", 3000.0, Target(">=", 3000)),
                    Figure("resume", "events", 10.0, "events")]
    written = json.loads(run.write(tmp_path / "out.json").read_text())
    assert written["backend"] == "sqlite" and written["quick"] is True
    assert written["machine"]["cpus"] >= 1
    first, second = written["figures"]
    assert first["ratio"] == 0.1 and first["passed"] is False and first["target"] == "≥ 3000"
    assert second["ratio"] is None and second["passed"] is None


def test_cli_refuses_unknown_benchmarks() -> None:
    assert parse(["send", "--quick"]).names == ["send"]
    with pytest.raises(SystemExit):
        parse(["sned"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_compare_measures_both_sides_each_from_its_own_source(tmp_path: Path,
                                                                     backend: str) -> None:
    if backend == "postgres":
        need(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    checkout = tmp_path / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(checkout), "HEAD"],
                   cwd=ROOT, check=True)
    try:
        probe = Deployment.prepare("sqlite", tmp_path / "probe", source=checkout,
                                   settings={"DIRECTO_LOG_LEVEL": "warning"})
        assert probe.env["PYTHONPATH"] == str(checkout / "src")
        assert probe.env["DIRECTO_LOG_LEVEL"] == "warning"
        # the benchmarks measure the default configuration, access log included
        assert "DIRECTO_LOG_LEVEL" not in Deployment.prepare("sqlite", tmp_path / "plain").env
        figures = await compare("HEAD", checkout, rounds=2, seconds=0.3, senders=2,
                                backend=backend, settings={"DIRECTO_LOG_LEVEL": "warning"})
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT,
                       check=True)
    assert set(figures) == {"HEAD", "this checkout"}
    assert all(cpu > 0 and rate > 0 for cpu, rate in figures.values())


async def test_workers_are_measured_together_and_their_baseline_has_as_many(
        tmp_path: Path) -> None:
    """With ``--workers 2``, a server's CPU and memory are its supervisor's and its workers'
    together, and the baseline is served the same way."""
    deployment = Deployment.prepare("sqlite", tmp_path / "directo", workers=2)
    (tmp_path / "baseline").mkdir()
    baseline = start_baseline(tmp_path / "baseline", workers=2)
    try:
        directo = deployment.start().servers[0]
        for server, request in (
                (directo, http_request("GET", "/healthz", f"{HOST}:{directo.port}")),
                (baseline, http_request("POST", "/send", f"{HOST}:{baseline.port}",
                                        {"client_id": "w", "text": "x"}))):
            assert len(server.pids()) >= 3  # the supervisor and two workers
            assert server.rss_kib() > 2 * _rss_kib(server.pid)  # workers are at least as big
            before = server.cpu_seconds()
            result = await closed_loop([(HOST, server.port, lambda _, r=request: r)] * 4, 0.5,
                                       warmup=0)
            assert result.errors == 0 and result.latencies
            assert server.cpu_seconds() > before
    finally:
        baseline.stop()
        deployment.close()
