"""Streams that come and go: does the garbage collector keep memory bounded, and how long does
it stop the server's event loop?

    .venv/bin/python -m bench.gc_churn [--rounds 12] [--streams 2000]

Each round opens ``--streams`` idle WebSocket streams on one ``directo serve`` (embedded
default), holds them half a second and closes them; after each round it prints the server's
RSS and the full (generation 2) collections so far with their total pause, read from
``/metrics``. A one-off check of the collector's settings (docs/performance.md), not one of
``python -m bench``'s figures: it has no baseline to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import uvloop

from bench.connections import ACCOUNTS, BATCH, close_all, full_collections, seed_stream_owners
from bench.load import open_idle_websocket
from bench.server import HOST, Deployment


async def churn(rounds: int, streams: int) -> None:
    with tempfile.TemporaryDirectory(prefix="directo-gc-churn-") as tmp:
        deployment = Deployment.prepare("sqlite", Path(tmp))
        tokens = seed_stream_owners(deployment)
        deployment.start()
        try:
            server = deployment.server_for(0)
            print(f"started: RSS {deployment.rss_kib() / 1024:.0f} MiB")
            for number in range(rounds):
                sockets = []
                for start in range(0, streams, BATCH):
                    sockets += await asyncio.gather(*(
                        open_idle_websocket(HOST, server.port, "/api/v1/stream",
                                            tokens[n % ACCOUNTS])
                        for n in range(start, min(streams, start + BATCH))))
                await asyncio.sleep(0.5)
                close_all(sockets)
                await asyncio.sleep(1.5)  # the server notices the closes
                count, seconds = await full_collections(server)
                print(f"round {number + 1}: RSS {deployment.rss_kib() / 1024:.0f} MiB, "
                      f"{count} full collections so far, {seconds:.2f} s of pause")
        finally:
            deployment.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_churn",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--streams", type=int, default=2000, help="streams per round")
    args = parser.parse_args(argv)
    uvloop.run(churn(args.rounds, args.streams))


if __name__ == "__main__":
    main()
