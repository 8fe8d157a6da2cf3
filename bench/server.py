"""Real server processes for the benchmarks: ``directo serve`` (one on SQLite, two on
PostgreSQL) and the baseline app, each on a free loopback port, with its RSS and CPU time
read from ``/proc``."""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, make_url, text

from directo.core import crypto

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("DIRECTO_BENCH_POSTGRES",
                                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DIRECTO_BENCH_REDIS", "redis://127.0.0.1:6379/13")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """Let this process hold as many sockets as the hard limit allows; the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log_path: Path,
                       seconds: float) -> None:
    """Return once ``url``/healthz answers 200; raise with the log's tail if the process
    exits first, or if ``seconds`` pass. (The test suite's servers use it too.)"""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start within {seconds} s: {log_path}")


@dataclass
class ServerProcess:
    """One server subprocess listening on ``port``; its output goes to ``log_path``."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([*self.argv, "--port", str(self.port)],
                                            env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            preexec_fn=raise_fd_limit)
        wait_until_serving(self.process, self.url, self.log_path, seconds=60)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The server and its children (the workers of ``--workers N``)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [self.pid, *map(int, children)]

    def rss_kib(self) -> int:
        """Resident memory now, of the server and its workers, from /proc/<pid>/status."""
        return sum(_rss_kib(pid) for pid in self.pids())

    def metrics(self, *samples: str) -> dict[str, float]:
        """These unlabelled samples of the server's ``/metrics`` (a histogram's ``_sum``, say),
        read at one moment; those it has none of are absent."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {found.name: float(found.value)
                for family in text_string_to_metric_families(text)
                for found in family.samples if found.name in samples and not found.labels}

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, of the server and its workers, from
        /proc/<pid>/stat."""
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DIRECTO_")}


def start_baseline(workdir: Path, workers: int = 1) -> ServerProcess:
    """The bare endpoints, served as ``directo serve`` serves Directo."""
    argv = [sys.executable, "-m", "bench.baseline_app", "--host", HOST,
            "--workers", str(workers)]
    return ServerProcess(argv, _clean_env(), workdir / "baseline.log", workers=workers).start()


def redis_broker_available() -> bool:
    return importlib.util.find_spec("directo.core.redis_broker") is not None


@dataclass
class Deployment:
    """A database made for one benchmark and the Directo processes serving it.

    ``prepare`` makes and migrates the database (so a benchmark can seed it in bulk before any
    server runs), ``start`` starts the processes, ``close`` stops them and drops the database.
    ``source``: a checkout whose ``src`` to run instead of this one (``bench.compare``);
    ``settings``: environment variables for its servers, over the defaults set here.
    """

    backend: str
    workdir: Path
    master_key: str = field(default_factory=crypto.generate_key)
    database_url: str = ""
    servers: list[ServerProcess] = field(default_factory=list)
    broker_url: str | None = None
    source: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # SQLite: one ``directo serve --workers N``; PostgreSQL: N processes

    @classmethod
    def prepare(cls, backend: str, workdir: Path, source: Path | None = None,
                workers: int = 1, settings: dict[str, str] | None = None) -> Deployment:
        workdir.mkdir(parents=True, exist_ok=True)
        deployment = cls(backend, workdir, source=source, workers=workers,
                         settings=dict(settings or {}))
        if backend == "postgres":
            name = f"directo_bench_{uuid.uuid4().hex[:8]}"
            _admin(f'CREATE DATABASE "{name}"')
            deployment.database_url = make_url(POSTGRES_ADMIN_URL).set(
                database=name).render_as_string(hide_password=False)  # a socket's ?host= too
            if redis_broker_available():
                deployment.broker_url = REDIS_URL
        else:
            deployment.database_url = f"sqlite:///{deployment.data_dir / 'directo.db'}"
        subprocess.run([sys.executable, "-m", "directo", "migrate", "--data-dir",
                        str(deployment.data_dir)], env=deployment.env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        return deployment

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def keyring(self) -> crypto.Keyring:
        return crypto.Keyring(crypto.decode_key(self.master_key))

    @property
    def env(self) -> dict[str, str]:
        env = _clean_env()
        env.update(DIRECTO_MASTER_KEY=self.master_key,
                   DIRECTO_ARGON2_MEMORY_KIB="1024", DIRECTO_ARGON2_TIME_COST="1",
                   # closed-loop senders go far past any per-account human sending limit
                   DIRECTO_SENDS_PER_MINUTE="100000000")
        if self.backend == "postgres":
            env["DIRECTO_DATABASE_URL"] = self.database_url
        if self.broker_url:
            env["DIRECTO_BROKER_URL"] = self.broker_url
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source / "src")
        env.update(self.settings)
        return env

    def start(self) -> Deployment:
        count = self.workers if self.backend == "postgres" else 1
        for number in range(count):
            argv = [sys.executable, "-m", "directo", "serve", "--host", HOST,
                    "--data-dir", str(self.data_dir)]
            if self.backend == "sqlite" and self.workers > 1:
                argv += ["--workers", str(self.workers)]
            log = self.workdir / f"directo-{number}.log"
            self.servers.append(ServerProcess(argv, self.env, log).start())
        return self

    def server_for(self, number: int) -> ServerProcess:
        """Clients are spread round-robin over the processes."""
        return self.servers[number % len(self.servers)]

    def rss_kib(self) -> int:
        return sum(server.rss_kib() for server in self.servers)

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    def close(self) -> None:
        self.stop()
        if self.backend == "postgres":
            name = make_url(self.database_url).database
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()
