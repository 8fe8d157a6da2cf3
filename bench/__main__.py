"""``python -m bench [names...] [--quick] [--backend sqlite|postgres] [--workers N] [--json PATH]``

Runs the chosen benchmarks (all by default) against real ``directo serve`` processes and the
baseline app, prints one table and writes the JSON to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from rich.console import Console

from bench import connections, deliver, growth, inbox, resume, send
from bench.context import Context
from bench.figures import Figure, Run, Target
from bench.server import REDIS_URL, raise_fd_limit, redis_broker_available, start_baseline

BENCHMARKS: dict[str, Callable[[Context], Awaitable[list[Figure]]]] = {
    "send": send.run, "deliver": deliver.run, "resume": resume.run,
    "connections": connections.run, "inbox": inbox.run, "growth": growth.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[2])
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="sqlite: one process (default); postgres: two processes")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="sqlite: serve with --workers N, and the baseline with as many "
                        "(default 1); postgres: N processes (default 2)")
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - BENCHMARKS.keys())
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


async def run_all(args: argparse.Namespace, console: Console) -> Run:
    result = Run(backend=args.backend, quick=args.quick)
    workers = args.workers or (2 if args.backend == "postgres" else 1)
    result.details["workers"] = workers
    if args.backend == "postgres":
        result.details["broker"] = REDIS_URL if redis_broker_available() else None
    with tempfile.TemporaryDirectory(prefix="directo-bench-") as tmp:
        workdir = Path(tmp)
        baseline = start_baseline(workdir, workers if args.backend == "sqlite" else 1)
        ctx = Context(args.backend, args.quick, workdir, baseline, result.details, workers)
        try:
            for name in args.names or BENCHMARKS:
                console.print(f"[bold]{name}[/bold] ...")
                began = time.monotonic()
                try:
                    figures = await BENCHMARKS[name](ctx)
                except Exception as error:  # one broken benchmark still leaves the others'
                    console.print_exception()
                    result.details.setdefault("errors", {})[name] = repr(error)
                    figures = [Figure(name, "did not complete (see details.errors)", 1,
                                      "error", None, Target("<", 1))]
                result.figures += figures
                console.print(f"  {name}: {len(figures)} figures in "
                              f"{time.monotonic() - began:.0f} s")
        finally:
            ctx.close()
            baseline.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    raise_fd_limit()
    console = Console()
    if not console.is_terminal:
        console.width = 160  # a log file gets the whole table on one line per figure
    result = uvloop.run(run_all(args, console))
    result.print(console)
    stamp = result.started.replace(":", "").replace("+0000", "Z")
    path = result.write(args.json or RESULTS / f"{stamp}.json")
    console.print(f"results written to {path}")


if __name__ == "__main__":
    main()
