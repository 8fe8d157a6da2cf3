"""The ``directo`` command, run as a real subprocess: demo, migrate, reports, keys, bad flags.

``run_cli`` and ``open_data_dir`` are also used by the encryption-at-rest tests."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from directo.app import App
from directo.client import AsyncDirecto
from directo.config import Settings
from directo.core import crypto, migrate
from directo.core.db import metadata
from directo.demo import LOGINS
from directo.demo import PASSWORD as DEMO_PASSWORD
from tests.conftest import FAST_HASH
from tests.helpers import metric


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``directo ARGS`` with only the given DIRECTO_* variables (and cheap password hashing)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTO_")}
    environment.update(FAST_HASH, COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "directo", *args], env=environment,
                          capture_output=True, text=True, timeout=120, check=False)


@asynccontextmanager
async def open_data_dir(data_dir: Path, **settings: Any,
                        ) -> AsyncIterator[tuple[App, Callable[[], AsyncDirecto]]]:
    """An App on a data directory's SQLite file (migrated if new), and SDK clients bound to
    it in-process; ``master_key`` defaults to the directory's key file."""
    values: dict[str, Any] = {"data_dir": data_dir, "master_key": None,
                              "argon2_memory_kib": 1024, "argon2_time_cost": 1, **settings}
    app = App(Settings(**values))
    migrate.upgrade(app.settings.effective_database_url)
    await app.start()
    made: list[AsyncDirecto] = []

    def make() -> AsyncDirecto:
        made.append(AsyncDirecto("http://directo.test",
                                 transport=httpx.ASGITransport(app=app.asgi())))
        return made[-1]

    try:
        yield app, make
    finally:
        for sdk in made:
            await sdk.close()
        await app.stop()


def _rows(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(f"sqlite:///{data_dir / 'directo.db'}")
    try:
        with engine.connect() as conn:
            return {table.name: sorted(map(tuple, conn.execute(select(table))), key=repr)
                    for table in metadata.sorted_tables}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory seeded once by ``directo demo --no-serve``, and what it printed."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    seeded = run_cli("demo", "--no-serve", "--data-dir", str(data_dir))
    assert seeded.returncode == 0, seeded.stderr
    return data_dir, seeded.stdout


def _copy(demo_dir: tuple[Path, str], tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_dir[0], tmp_path / "data"))


@pytest.mark.slow
async def test_demo_seeds_spanish_and_english_and_prints_logins(demo_dir) -> None:
    data_dir, printed = demo_dir
    assert DEMO_PASSWORD in printed
    for handle, _ in LOGINS:
        assert handle in printed
    async with open_data_dir(data_dir) as (_, client):
        lucia = client()
        await lucia.login("lucia", DEMO_PASSWORD)
        with_sam = next(c for c in (await lucia.conversations())["items"]
                        if c["with"]["handle"] == "sam.okafor")
        texts = [m["text"] for m in (await lucia.messages(with_sam["id"]))["items"]]
    assert texts[0].startswith("¡Hola Sam!")
    assert texts[1].startswith("Hi Lucía!")


@pytest.mark.slow
def test_demo_twice_leaves_the_data_as_it_is(demo_dir, tmp_path: Path) -> None:
    data_dir = _copy(demo_dir, tmp_path)
    before = _rows(data_dir)
    key = (data_dir / crypto.KEY_FILE).read_text()
    again = run_cli("demo", "--no-serve", "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout
    assert _rows(data_dir) == before
    assert (data_dir / crypto.KEY_FILE).read_text() == key


@pytest.mark.slow
async def test_reports_lists_a_report(demo_dir, tmp_path: Path) -> None:
    data_dir = _copy(demo_dir, tmp_path)
    empty = run_cli("reports", "--data-dir", str(data_dir))
    assert empty.returncode == 0, empty.stderr
    assert "0 reports" in empty.stdout
    async with open_data_dir(data_dir) as (_, client):
        marta = client()
        await marta.login("cocina.con.marta", DEMO_PASSWORD)
        request = (await marta.conversations(folder="requests"))["items"][0]
        await marta.report(request["id"], "unsolicited school pitch",
                                  request["last_message"]["id"])
    listed = run_cli("reports", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    assert "1 reports" in listed.stdout
    assert "unsolicited school pitch" in listed.stdout
    assert "cocina.con.marta" in listed.stdout
    assert "Hola Marta" in listed.stdout  # moderators see the reported text


@pytest.mark.slow
def test_migrate_brings_a_new_data_dir_to_the_current_schema(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    for _ in range(2):  # and a second run is harmless
        result = run_cli("migrate", "--data-dir", str(data_dir))
        assert result.returncode == 0, result.stderr
        assert "schema is current" in result.stdout
    assert migrate.is_current(f"sqlite:///{data_dir / 'directo.db'}")


@pytest.mark.slow
def test_keys_generate_prints_a_fresh_valid_key() -> None:
    printed = [run_cli("keys", "generate") for _ in range(2)]
    keys = []
    for result in printed:
        assert result.returncode == 0, result.stderr
        keys.append(result.stdout.strip())
        assert len(crypto.decode_key(keys[-1])) == crypto.KEY_BYTES
    assert keys[0] != keys[1]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "env", "expected"), [
    (["serve", "--port", "not-a-port"], {}, "Invalid value for '--port'"),
    (["demo", "--no-such-flag"], {}, "No such option"),
    (["launch"], {}, "No such command"),
    (["reports"], {"DIRECTO_MASTER_KEY": "c2hvcnQ"}, "a master key must be 32 bytes"),
    (["serve"], {"DIRECTO_MASTER_KEY": "c2hvcnQ"}, "a master key must be 32 bytes"),
])
def test_bad_flags_and_settings_get_a_clear_error(tmp_path: Path, args: list[str],
                                                  env: dict[str, str], expected: str) -> None:
    result = run_cli(*args, DIRECTO_DATA_DIR=str(tmp_path / "data"), **env)
    assert result.returncode == 2
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert env.get("DIRECTO_MASTER_KEY", "\0") not in result.stderr + result.stdout


def test_serve_keeps_its_startup_heap_out_of_the_collectors_way_and_times_its_pauses(
        server_factory: Callable[..., Any]) -> None:
    """A full garbage collection over start-up's objects stopped the loop for 100+ ms; a
    served process freezes them, and shows every collection's pause to its operator."""
    server = server_factory()
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "directo_gc_frozen_objects") > 50_000
    # the full collection just before the freeze is the first one timed
    assert metric(text, "directo_gc_pause_seconds_count") > 0


def test_serve_builds_its_routes_before_traffic_and_leaves_no_trace_of_it(
        server_factory: Callable[..., Any]) -> None:
    """FastAPI builds its routes on the first request matched against them (70-120 ms for
    whoever came first); a served process walks them once at start, by a request that
    goes to the router alone: no access log line, no request in the operator's metrics."""
    server = server_factory(DIRECTO_LOG_LEVEL="info")
    text = httpx.get(f"{server.url}/metrics").text
    routes = {sample.labels["route"] for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.name == "directo_http_request_seconds_count"}
    assert routes == {"/healthz"}  # the readiness probe only
    assert "start-up" not in server.log() and "unmatched" not in server.log()


async def test_the_start_up_walk_builds_every_router_s_routes(app: App) -> None:
    """What the walk is for, checked on FastAPI's own record of what it has built (a private
    one: if a FastAPI upgrade changes it, this says the walk needs another look)."""
    from directo.app import _walk_routes

    api = app.api
    included = [route for route in api.router.routes
                if hasattr(route, "_effective_candidates_version")]
    assert len(included) >= 5  # the feature routers
    assert all(route._effective_candidates_version is None for route in included)
    await _walk_routes(api)
    assert all(route._effective_candidates_version is not None for route in included)


async def test_an_app_that_does_not_own_its_process_leaves_the_collector_alone(
        app: App) -> None:
    assert gc.get_freeze_count() == 0


def test_serve_does_not_name_its_server_software(server_factory: Callable[..., Any]) -> None:
    response = httpx.get(f"{server_factory().url}/healthz")
    assert "server" not in response.headers
    assert response.headers["date"]  # HTTP/1.1 asks an origin server with a clock for it
