"""Compare the send path of this checkout with another revision's, side by side.

    .venv/bin/python -m bench.compare REV [--rounds 10] [--seconds 2] [--senders 20]
                                          [--backend postgres] [--env NAME=VALUE ...]

One ``directo serve`` runs this checkout, another runs REV (checked out with ``git worktree``
into a temporary directory), each on a database of its own seeded alike. The same
closed-loop send load goes to each in turn, in short windows, alternating which goes first:
both see the same drift of this shared machine, which a run now and a run in ten minutes
would not. Prints each one's server CPU per send and throughput, and the ratio. REV must
have the same schema as this checkout (the seeding is this checkout's). With ``--backend
postgres`` each side has a PostgreSQL database of its own, one process, and the Redis
broker when it is reachable. ``--env`` sets REV's servers' environment: ``HEAD --env
DIRECTO_LOG_LEVEL=warning`` measures what the default access log costs."""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import uvloop
from rich.console import Console
from rich.table import Table

from bench.load import closed_loop
from bench.seed import Pairs, Seeder, seed_pairs
from bench.send import message_request
from bench.server import HOST, ROOT, Deployment


async def compare(revision: str, source: Path, rounds: int, seconds: float,
                  senders: int, backend: str,
                  settings: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Per side: (server CPU µs per send, msg/s) over all its windows."""
    workdir = Path(tempfile.mkdtemp(prefix="directo-compare-"))
    sides = {revision: Deployment.prepare(backend, workdir / "other", source=source,
                                          settings=settings),
             "this checkout": Deployment.prepare(backend, workdir / "this")}
    pairs: dict[str, Pairs] = {}
    cpu_us = dict.fromkeys(sides, 0.0)
    sent = dict.fromkeys(sides, 0)
    try:
        for name, deployment in sides.items():
            seeder = Seeder(deployment.database_url, deployment.keyring)
            with seeder.connect() as conn:
                pairs[name] = seed_pairs(seeder, conn, senders)
            deployment.start()
        for number in range(rounds):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for name in order:
                server, seeded = sides[name].server_for(0), pairs[name]
                targets = [(HOST, server.port, message_request(
                    f"{HOST}:{server.port}",
                    f"/api/v1/conversations/{seeded.conversations[n].id}/messages",
                    seeded.tokens[seeded.senders[n]], f"w{number}-{n}")) for n in range(senders)]
                result = await closed_loop(targets, seconds, server_cpu=sides[name].cpu_seconds)
                summary = result.summary()
                cpu_us[name] += summary["server_cpu_us_per_request"] * summary["requests"]
                sent[name] += int(summary["requests"])
    finally:
        for deployment in sides.values():
            deployment.close()
    return {name: (cpu_us[name] / max(sent[name], 1), sent[name] / (rounds * seconds))
            for name in sides}


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("revision", help="a commit, branch or tag to compare with")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="per window")
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--env", action="append", default=[], type=_setting,
                        metavar="NAME=VALUE", help="an environment variable for REV's servers")
    args = parser.parse_args()
    checkout = Path(tempfile.mkdtemp(prefix="directo-rev-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(checkout),
                    args.revision], cwd=ROOT, check=True)
    try:
        label = " ".join([args.revision, *(f"{name}={value}" for name, value in args.env)])
        figures = uvloop.run(compare(label, checkout, args.rounds, args.seconds,
                                     args.senders, args.backend, dict(args.env)))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT,
                       check=True)
    table = Table(title=f"send on {args.backend}, {args.senders} senders, {args.rounds} "
                        f"alternating windows of {args.seconds:g} s each")
    for column in ("code", "server CPU per send", "msg/s"):
        table.add_column(column, justify="left" if column == "code" else "right")
    for name, (cpu, rate) in figures.items():
        table.add_row(name, f"{cpu:,.0f} µs", f"{rate:,.0f}")
    (old_cpu, old_rate), (new_cpu, new_rate) = figures.values()
    table.add_row("this / other", f"{new_cpu / old_cpu:.3f}", f"{new_rate / old_rate:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
