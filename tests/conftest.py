"""Fixtures: an App on a fresh SQLite file or a PostgreSQL database, SDK clients bound to it,
and real ``directo serve`` processes for the guarantees that need them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from bench.server import free_port, wait_until_serving
from directo.app import App
from directo.client import AsyncDirecto
from directo.config import Settings
from directo.core import crypto, migrate
from directo.core.db import metadata

IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get("DIRECTO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct horse battery"
FAST_HASH = {"DIRECTO_ARGON2_MEMORY_KIB": "1024", "DIRECTO_ARGON2_TIME_COST": "1"}


def need(condition: bool, reason: str) -> None:
    """Skip when a service or tool is missing, except in CI where everything must run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def master_key() -> str:
    return crypto.generate_key()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrations run once per session)."""
    path = tmp_path_factory.mktemp("template") / "directo.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of our own on the machine's PostgreSQL, migrated once."""
    name = f"directo_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        need(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    return str(request.param)


@pytest.fixture
def settings_factory(tmp_path: Path, master_key: str, backend: str,
                     request: pytest.FixtureRequest,
                     sqlite_template: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "master_key": master_key,
                                  "argon2_memory_kib": 1024, "argon2_time_cost": 1}
        if backend == "postgresql":
            url = request.getfixturevalue("postgres_url")
            _truncate(url)
            values["database_url"] = url
        else:
            values["data_dir"].mkdir(parents=True, exist_ok=True)
            target = values["data_dir"] / "directo.db"
            if not target.exists():
                shutil.copy(sqlite_template, target)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def app(settings_factory: Callable[..., Settings]) -> AsyncIterator[App]:
    instance = App(settings_factory())
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
async def client(app: App) -> AsyncIterator[Callable[[], AsyncDirecto]]:
    """Make SDK clients talking to the app in-process."""
    asgi = app.asgi()
    made: list[AsyncDirecto] = []

    def make() -> AsyncDirecto:
        sdk = AsyncDirecto("http://directo.test", transport=httpx.ASGITransport(app=asgi))
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        await sdk.close()


@pytest.fixture
def signup(client: Callable[[], AsyncDirecto]) -> Callable[..., Any]:
    """``await signup("ana")``: an account, logged in, as an SDK client."""
    async def make(handle: str, kind: str = "person", display_name: str | None = None,
                   ) -> AsyncDirecto:
        sdk = client()
        await sdk.signup(handle, PASSWORD, display_name or handle.title(), kind)
        return sdk

    return make


class Server:
    """A real ``directo serve`` process."""

    def __init__(self, env: dict[str, str], data_dir: Path, log: Path) -> None:
        self.env, self.data_dir, self.log_path = env, data_dir, log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "directo", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)], env=self.env, stdout=log,
            stderr=subprocess.STDOUT)
        wait_until_serving(self.process, self.url, self.log_path, seconds=30)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def server_factory(tmp_path: Path, master_key: str) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(data_dir: Path | None = None, **env: str) -> Server:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTO_")}
        environment.update(FAST_HASH, DIRECTO_MASTER_KEY=master_key, **env)
        server = Server(environment, data_dir or tmp_path / "server-data",
                        tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()
