"""Profile ``directo serve`` (embedded default) under the ``send`` load with py-spy.

    .venv/bin/pip install py-spy     # a tool for this script only, not a project dependency
    .venv/bin/python -m bench.profile_send [--seconds 10] [--senders 20] [--stored 1000000]
                                           [--gil] [--backend postgres]

py-spy samples every thread of the running server (the event loop, where the send
transactions run too, the SQLite commit thread, PostgreSQL's worker threads), which an
in-process profiler such as pyinstrument would not. Prints the functions with the most
samples, on their own (self) and with what they call (inclusive), and writes the raw stacks
next to the results.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from rich.console import Console
from rich.table import Table

from bench.load import LoadResult, closed_loop
from bench.seed import Seeder, seed_pairs
from bench.send import message_request
from bench.server import HOST, Deployment, ServerProcess

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Profile:
    samples: int
    self_counts: Counter[str]
    inclusive_counts: Counter[str]
    threads: Counter[str]


def frame_name(frame: str) -> str:
    """``func (path/file.py:123)`` without the line number, so a function is one entry."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def in_directo(name: str) -> bool:
    """Directo's own code below the CLI entry points (which every sample passes through)."""
    return "(directo/" in name and not name.endswith(("(directo/cli.py)",
                                                       "(directo/__main__.py)"))


def thread_of(frames: list[str]) -> str:
    if any(frame.startswith("_commit (") for frame in frames):
        return "SQLite commit thread"
    if frames and frames[0].startswith("Thread._bootstrap"):
        return "other threads (thread pool)"
    return "event loop (main thread)"


def parse_raw(text: str) -> Profile:
    """Collapsed stacks, one ``frame;frame;... count`` per line, into per-function counts."""
    profile = Profile(0, Counter(), Counter(), Counter())
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        names = [frame_name(frame) for frame in frames]
        profile.samples += count
        profile.self_counts[names[-1]] += count
        for name in set(names):
            profile.inclusive_counts[name] += count
        profile.threads[thread_of(frames)] += count
    return profile


def table(title: str, counts: Counter[str], samples: int, top: int) -> Table:
    out = Table(title=title)
    for column in ("#", "function (file)", "samples", "share"):
        out.add_column(column, justify="left" if column == "function (file)" else "right")
    for rank, (name, count) in enumerate(counts.most_common(top), start=1):
        out.add_row(str(rank), name, str(count), f"{count / samples:.1%}")
    return out


async def load(server: ServerProcess, pairs_tokens: list[tuple[str, str]],
               seconds: float) -> LoadResult:
    targets = [(HOST, server.port, message_request(
        f"{HOST}:{server.port}", f"/api/v1/conversations/{conversation}/messages", token,
        f"prof{n}")) for n, (conversation, token) in enumerate(pairs_tokens)]
    return await closed_loop(targets, seconds, warmup=0.5, server_cpu=server.cpu_seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_send")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: the first of the two processes takes all the load")
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread holding the GIL: Python's CPU, without "
                        "the time a thread spends waiting for the GIL or inside SQLite")
    parser.add_argument("--stored", type=int, default=0,
                        help="messages (with their events) seeded before the server starts")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    console = Console(width=160)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    raw_path = RESULTS / f"profile-send-{stamp}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="directo-profile-") as tmp:
        deployment = Deployment.prepare(args.backend, Path(tmp))
        seeder = Seeder(deployment.database_url, deployment.keyring)
        with seeder.connect() as conn:
            pairs = seed_pairs(seeder, conn, args.senders)
            if args.stored:
                seeder.messages(conn, pairs.conversations, args.stored)
        server = deployment.start().server_for(0)
        try:
            recorder = subprocess.Popen(
                [spy, "record", "--pid", str(server.pid), "--rate", str(args.rate),
                 "--duration", str(int(args.seconds)), "--format", "raw", "--nonblocking",
                 "-o", str(raw_path), *(["--gil"] if args.gil else [])],
                stdout=subprocess.DEVNULL)
            result = uvloop.run(load(server, [
                (conversation.id, pairs.tokens[sender])
                for conversation, sender in zip(pairs.conversations, pairs.senders,
                                                strict=True)], args.seconds))
            recorder.wait()
        finally:
            deployment.close()
    profile = parse_raw(raw_path.read_text())
    console.print(f"send load during the profile: {result.summary()}")
    console.print(f"{profile.samples} samples; by thread: " + ", ".join(
        f"{name} {count / profile.samples:.0%}" for name, count in profile.threads.items()))
    console.print(table("self time: where the samples were", profile.self_counts,
                        profile.samples, args.top))
    directo_only = Counter({name: count for name, count in profile.inclusive_counts.items()
                            if in_directo(name)})
    console.print(table("inclusive time: Directo's functions and what they call",
                        directo_only, profile.samples, args.top))
    console.print(f"raw stacks: {raw_path}")


if __name__ == "__main__":
    main()
