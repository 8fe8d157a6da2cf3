"""Several ``directo serve`` processes sharing the work, in both topologies: one PostgreSQL
database and one Redis, or one SQLite file and a hub (what ``directo serve --workers N`` runs
for its workers when there is no Redis). People on different processes talk live; a process
killed with ``kill -9``, or a restart of Redis or of the hub, costs nobody an event; typing,
presence and the rate limits work across processes.

The module gets its own PostgreSQL database, its own ``redis-server`` and its own hub (so
either can be killed without disturbing anyone). Catch-up is set to 30 s, far above every
wait here, so a delivery that arrives proves the wake-up path (Redis or the hub, or the
reconnect wake-up) and not the periodic re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import create_engine, text

from directo.client import AsyncDirecto, DirectoAPIError
from directo.core.hub import HubThread
from directo.core.redis_broker import CHANNEL, RedisBroker
from tests.conftest import (
    FAST_HASH,
    PASSWORD,
    PG_ADMIN_URL,
    Server,
    free_port,
    need,
    postgres_available,
)
from tests.helpers import metric, presence, until_online

pytestmark = pytest.mark.slow

WAIT = 20.0  # seconds any expected delivery may take, at most; far below it normally
CATCH_UP = "30"


class RedisServer:
    """A ``redis-server`` of our own, without persistence, that a test may kill and restart."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module, migrated with ``directo migrate``."""
    need(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    name = f"directo_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTO_")}
    subprocess.run([sys.executable, "-m", "directo", "migrate"], check=True,
                   env={**env, "DIRECTO_DATABASE_URL": url}, capture_output=True)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    yield server
    server.kill()


class HubServer:
    """A hub of our own, as ``directo serve --workers N`` runs one, that a test may stop and
    start again on the same socket."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.thread: HubThread | None = None

    @property
    def path(self) -> Path:
        return self.directory / "hub.sock"

    def start(self) -> None:
        self.thread = HubThread(self.directory).start()

    def kill(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    hub = HubServer(tmp_path_factory.mktemp("hub"))
    hub.start()
    yield hub
    hub.kill()


class Restartable(Protocol):
    def start(self) -> None: ...
    def kill(self) -> None: ...


@dataclass
class Topology:
    """What the processes share: ``env`` for each of them, the ``shared`` service a test may
    restart, what a process logs when it loses that service, and ``workers_env``: what
    ``directo serve --workers N`` needs beside (without Redis, it runs a hub of its own)."""

    name: str
    env: dict[str, str]
    shared: Restartable
    lost_log: str
    workers_env: dict[str, str]


@pytest.fixture(scope="module", params=["postgres+redis", "sqlite+hub"])
def topology(request: pytest.FixtureRequest) -> Topology:
    if request.param == "postgres+redis":
        database_url = request.getfixturevalue("database_url")
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        env = {"DIRECTO_DATABASE_URL": database_url, "DIRECTO_BROKER_URL": redis_server.url,
               "DIRECTO_CATCH_UP_SECONDS": CATCH_UP}
        return Topology(request.param, env, redis_server, "redis publish failed", env)
    hub: HubServer = request.getfixturevalue("hub_server")
    return Topology(request.param, {"DIRECTO_HUB_SOCKET": str(hub.path),
                                    "DIRECTO_CATCH_UP_SECONDS": CATCH_UP},
                    hub, "hub connection lost", {"DIRECTO_CATCH_UP_SECONDS": CATCH_UP})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, master_key: str,
         topology: Topology) -> Iterator[tuple[Server, Server]]:
    """Two processes sharing the topology's database and broker, shared by the tests that
    leave them running (each test makes accounts of its own)."""
    base = tmp_path_factory.mktemp("pair")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTO_")}
    environment.update(FAST_HASH, DIRECTO_MASTER_KEY=master_key, **topology.env)
    servers = [Server(environment, base / "data", base / f"server-{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


class People:
    """SDK clients bound to given server processes, closed at the end of the test."""

    def __init__(self) -> None:
        self.made: list[AsyncDirecto] = []

    def on(self, server: Server, token: str | None = None) -> AsyncDirecto:
        """A client of ``server``; with ``token``, someone already logged in elsewhere."""
        sdk = AsyncDirecto(server.url, token=token)
        self.made.append(sdk)
        return sdk

    async def signup(self, server: Server, name: str) -> AsyncDirecto:
        """A new account, logged in through ``server``."""
        sdk = self.on(server)
        await sdk.signup(f"{name}_{uuid.uuid4().hex[:8]}", PASSWORD, name.title())
        return sdk


@pytest.fixture
async def people() -> AsyncIterator[People]:
    made = People()
    yield made
    for sdk in made.made:
        await sdk.close()


def handle_of(sdk: AsyncDirecto) -> str:
    assert sdk.account is not None
    return str(sdk.account["handle"])


async def befriend(one: AsyncDirecto, two: AsyncDirecto) -> str:
    """Follow each other and talk, so the conversation is accepted on both sides; its id."""
    await one.follow(handle_of(two))
    await two.follow(handle_of(one))
    conversation = str((await one.start_conversation(handle_of(two)))["id"])
    await one.send(conversation, "hello")
    return conversation


class Listener:
    """Reads an SDK ``stream()`` in the background and keeps every frame it yields."""

    def __init__(self, sdk: AsyncDirecto, after: str | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(sdk, after))

    async def _read(self, sdk: AsyncDirecto, after: str | None) -> None:
        async for frame in sdk.stream(after):
            self.frames.append(frame)
            self._changed.set()

    def texts(self) -> list[str]:
        return [frame["data"]["message"]["text"] for frame in self.frames
                if frame["type"] == "message.created"]

    async def until(self, done: Callable[[Listener], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not done(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._task.done():
                pytest.fail(f"never saw {what}; got {[f['type'] for f in self.frames]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue

    async def ready(self) -> None:
        await self.until(lambda me: any(f["type"] == "ready" for f in me.frames), "ready")

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(sdk: AsyncDirecto, after: str | None = None) -> Listener:
        listener = Listener(sdk, after)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        await listener.stop()


async def test_a_conversation_across_processes_is_live_both_ways(pair, people, listen) -> None:
    one, two = pair
    ana, ben = await people.signup(one, "ana"), await people.signup(two, "ben")
    conversation = await befriend(ana, ben)
    ana_hears, ben_hears = listen(ana), listen(ben)
    await ana_hears.ready()
    await ben_hears.ready()

    for i in range(10):
        await ana.send(conversation, f"ana {i}")
        await ben.send(conversation, f"ben {i}")

    expected = [f"{who} {i}" for i in range(10) for who in ("ana", "ben")]
    await ben_hears.until(lambda me: len(me.texts()) == 20, "all 20 messages on ben's process")
    await ana_hears.until(lambda me: len(me.texts()) == 20, "all 20 messages on ana's process")
    assert ben_hears.texts() == expected
    assert ana_hears.texts() == expected


async def test_kill_9_mid_traffic_its_clients_resume_elsewhere_missing_nothing(
        server_factory, topology: Topology, people, listen) -> None:
    one, two, three = (server_factory(**topology.env) for _ in range(3))
    ana, ben = await people.signup(one, "ana"), await people.signup(two, "ben")
    conversation = await befriend(ana, ben)
    ben_on_two = listen(ben)
    await ben_on_two.ready()
    sent = [f"m{i:03}" for i in range(80)]

    async def traffic() -> None:
        for text_ in sent:
            await ana.send(conversation, text_)

    sender = asyncio.create_task(traffic())
    await ben_on_two.until(lambda me: len(me.texts()) >= 15, "the traffic reaching ben")
    two.kill()  # SIGKILL: no goodbye to anyone
    await ben_on_two.stop()
    before_kill = ben_on_two.texts()
    assert len(before_kill) < len(sent)  # the kill came mid-traffic

    # a load balancer would send ben's reconnect to a live process, with his last cursor
    ben_on_three = listen(people.on(three, ben.token), after=ben.cursor)
    await sender
    await ben_on_three.until(lambda me: len(before_kill) + len(me.texts()) >= len(sent),
                             "every message after the kill")
    assert before_kill + ben_on_three.texts() == sent  # each once, in order


async def test_broker_restart_mid_traffic_delivery_resumes_and_nothing_is_lost(
        pair, people, listen, topology: Topology) -> None:
    """Redis, or the hub, goes away and comes back."""
    one, two = pair
    ana, ben = await people.signup(one, "ana"), await people.signup(two, "ben")
    conversation = await befriend(ana, ben)
    ben_hears = listen(ben)
    await ben_hears.ready()
    sent = [f"r{i:02}" for i in range(15)]

    for text_ in sent[:5]:
        await ana.send(conversation, text_)
    await ben_hears.until(lambda me: len(me.texts()) == 5, "live delivery before the outage")

    topology.shared.kill()
    try:
        for text_ in sent[5:10]:  # sending does not depend on the broker
            await ana.send(conversation, text_)
        await people.on(one).login(handle_of(ana), PASSWORD)  # nor does logging in
    finally:
        topology.shared.start()
    # catch-up is 30 s: these arrive because the listener reconnects and wakes everyone
    await ben_hears.until(lambda me: len(me.texts()) == 10, "what was sent during the outage")
    await people.on(two).login(handle_of(ben), PASSWORD)  # the rate limit's storage is back too

    for text_ in sent[10:]:
        await ana.send(conversation, text_)
    await ben_hears.until(lambda me: len(me.texts()) == 15, "live delivery after the outage")
    assert ben_hears.texts() == sent
    assert (await until_online(ana, handle_of(ben), online=True))["online"]  # rewritten

    log = one.log()
    assert topology.lost_log in log  # logged...
    assert not any(text_ in log for text_ in sent)  # ...without the payload


def typing_from(listener: Listener, sdk: AsyncDirecto) -> list[dict[str, Any]]:
    return [f for f in listener.frames
            if f["type"] == "typing" and f["data"]["by"]["handle"] == handle_of(sdk)]


async def test_typing_reaches_the_peer_on_every_process_exactly_once(pair, people,
                                                                     listen) -> None:
    one, two = pair
    ana, ben, cyd = (await people.signup(one, "ana"), await people.signup(two, "ben"),
                     await people.signup(two, "cyd"))
    conversation = await befriend(ana, ben)
    await befriend(cyd, ben)
    ben_on_two = listen(ben)
    ben_on_one = listen(people.on(one, ben.token))  # his other device, on ana's process
    await ben_on_two.ready()
    await ben_on_one.ready()

    await ana.typing(conversation)
    await ben_on_two.until(lambda me: bool(typing_from(me, ana)), "ana typing, across processes")
    (typing,) = typing_from(ben_on_two, ana)
    assert typing["data"]["conversation_id"] == conversation

    # cyd's typing goes through the broker after ana's did: once it reached process one, so had
    # any echo of ana's own publication, which process one must not deliver a second time
    await cyd.typing((await cyd.start_conversation(handle_of(ben)))["id"])
    await ben_on_one.until(lambda me: bool(typing_from(me, cyd)), "cyd typing, across processes")
    assert len(typing_from(ben_on_one, ana)) == 1


async def test_presence_follows_a_stream_on_another_process(pair, people, listen) -> None:
    one, two = pair
    ana, ben = await people.signup(one, "ana"), await people.signup(two, "ben")
    stranger = await people.signup(one, "cyd")
    await befriend(ana, ben)
    ben_handle = handle_of(ben)
    assert await presence(ana, ben_handle) == {"online": False, "last_seen_at": None}

    ben_hears = listen(ben)
    await ben_hears.ready()
    await until_online(ana, ben_handle, online=True)
    with pytest.raises(DirectoAPIError) as refused:
        await presence(stranger, ben_handle)
    assert refused.value.status == 404

    await ben_hears.stop()
    seen = await until_online(ana, ben_handle, online=False)
    assert seen["last_seen_at"] is not None


async def test_a_logout_on_one_process_ends_sending_on_the_other(pair, people) -> None:
    one, two = pair
    ana, ben = await people.signup(one, "ana"), await people.signup(one, "ben")
    conversation = await befriend(ana, ben)
    ana_on_two = people.on(two, token=ana.token)
    await ana_on_two.send(conversation, "sent through the other process")
    await ana.logout()
    with pytest.raises(DirectoAPIError) as refused:
        await ana_on_two.send(conversation, "after logging out elsewhere")
    assert refused.value.status == 401


async def test_failed_logins_on_two_processes_share_one_budget(pair, people) -> None:
    one, two = pair
    handle = handle_of(await people.signup(one, "ana"))
    guesser_one, guesser_two = people.on(one), people.on(two)

    for attempt in range(5):  # the default budget, spread: no process saw five
        guesser = guesser_one if attempt % 2 else guesser_two
        with pytest.raises(DirectoAPIError) as wrong:
            await guesser.login(handle, "wrong password guess")
        assert wrong.value.status == 401

    for guesser in (guesser_two, guesser_one):  # now both refuse, even the right password
        with pytest.raises(DirectoAPIError) as limited:
            await guesser.login(handle, PASSWORD)
        assert (limited.value.status, limited.value.code) == (429, "rate_limited")


async def test_sends_through_two_processes_spend_one_budget(server_factory, topology: Topology,
                                                           people) -> None:
    one, two = (server_factory(DIRECTO_SENDS_PER_MINUTE="5", **topology.env) for _ in range(2))
    ana, ben = await people.signup(one, "ana"), await people.signup(two, "ben")
    conversation = await befriend(ana, ben)  # the first of ana's five
    ana_on_two = people.on(two, token=ana.token)

    for number in range(4):  # spread: no process saw five
        await (ana if number % 2 else ana_on_two).send(conversation, f"within {number}")

    for sdk in (ana, ana_on_two):
        with pytest.raises(DirectoAPIError) as limited:
            await sdk.send(conversation, "one too many")
        assert (limited.value.status, limited.value.code) == (429, "rate_limited")


def worker_pids(server: Server) -> list[int]:
    """The workers of a ``--workers N`` server: its children but multiprocessing's resource
    tracker."""
    assert server.process is not None
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if b"spawn_main" in _cmdline(int(child))]


def _cmdline(pid: int) -> bytes:
    """The command line of ``pid``; empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


async def test_serve_with_workers_shares_the_work(server_factory, topology: Topology, people,
                                                  listen) -> None:
    server = server_factory(DIRECTO_WORKERS="2", **topology.workers_env)
    assert len(worker_pids(server)) >= 2
    ana, ben = await people.signup(server, "ana"), await people.signup(server, "ben")
    conversation = await befriend(ana, ben)
    # several streams and one connection per send, so both workers take part
    streams = [listen(people.on(server, ben.token)) for _ in range(4)]
    for stream in streams:
        await stream.ready()
    sent = [f"w{i:02}" for i in range(20)]
    for text_ in sent:
        async with AsyncDirecto(server.url, token=ana.token) as fresh_connection:
            await fresh_connection.send(conversation, text_)
    for stream in streams:
        await stream.until(lambda me: len(me.texts()) == len(sent), "every message")
        assert stream.texts() == sent


ESTABLISHED, LISTEN = "01", "0A"  # TCP states as /proc/net/tcp writes them


def sockets_held(pid: int, port: int, state: str) -> int:
    """How many TCP sockets on local ``port``, in ``state``, the process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed since the listing
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    held = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, inode = int(fields[1].split(":")[1], 16), fields[9]
        held += local_port == port and fields[3] == state and inode in inodes
    return held


async def test_workers_each_take_a_share_of_a_burst_of_connections(server_factory) -> None:
    """Each worker listens through a socket of its own, so the kernel spreads new connections
    over them. With one shared socket, a burst of connections (the kernel completes them all
    before any worker wakes) went to whichever worker accepted first."""
    server = server_factory(DIRECTO_WORKERS="2")
    deadline = time.monotonic() + WAIT
    while sum(sockets_held(pid, server.port, LISTEN) for pid in worker_pids(server)) < 2:
        assert time.monotonic() < deadline, "the workers never both listened"
        await asyncio.sleep(0.05)
    burst = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
    try:
        for _, writer in burst:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: directo\r\n\r\n")
        for reader, _ in burst:
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        shares = [sockets_held(pid, server.port, ESTABLISHED) for pid in worker_pids(server)]
        assert sum(shares) == 20 and min(shares) > 0, shares
    finally:
        for _, writer in burst:
            writer.close()


async def test_metrics_of_workers_count_every_worker(server_factory, people) -> None:
    server = server_factory(DIRECTO_WORKERS="2")
    ana, ben = await people.signup(server, "ana"), await people.signup(server, "ben")
    conversation = await befriend(ana, ben)  # one message
    assert ana.token is not None
    for number in range(20):  # each on a new connection: both workers take some
        await send_until_acknowledged(server, ana.token, conversation, f"counted {number}")

    for _ in range(4):  # whichever worker answers, it counts all of them
        async with httpx.AsyncClient(base_url=server.url) as fresh_connection:
            text_ = (await fresh_connection.get("/metrics")).text
        assert metric(text_, "directo_messages_sent_total") == 21
        assert metric(text_, "directo_gc_frozen_objects") > 50_000


async def test_a_supervisor_killed_with_kill_9_takes_its_workers_with_it(server_factory,
                                                                         people) -> None:
    """Workers left running by a dead supervisor would hold the port with no hub and nobody
    to restart them, and a new ``directo serve`` on that port would share it with them."""
    server = server_factory(DIRECTO_WORKERS="2")
    workers = worker_pids(server)
    assert len(workers) == 2
    server.kill()
    deadline = time.monotonic() + WAIT
    while any(b"spawn_main" in _cmdline(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        await asyncio.sleep(0.05)
    server.start()  # the same port, served afresh
    ana = await people.signup(server, "ana")
    assert (await ana.me())["handle"] == handle_of(ana)


async def test_a_worker_whose_loop_stands_still_is_replaced(server_factory, people) -> None:
    """A stopped process stands in for a hung event loop: it holds its connections and its
    share of the port, and answers nothing."""
    server = server_factory(DIRECTO_WORKERS="2", DIRECTO_WORKER_HANG_SECONDS="2")
    ana, ben = await people.signup(server, "ana"), await people.signup(server, "ben")
    conversation = await befriend(ana, ben)
    assert ana.token is not None
    hung = worker_pids(server)[0]
    os.kill(hung, signal.SIGSTOP)
    deadline = time.monotonic() + WAIT
    while hung in worker_pids(server) or len(worker_pids(server)) < 2:
        assert time.monotonic() < deadline, "the hung worker was never replaced"
        await asyncio.sleep(0.1)
    assert f"worker {hung} has not run its event loop" in server.log()
    for number in range(10):  # new connections, to either worker
        await send_until_acknowledged(server, ana.token, conversation, f"after {number}")
    async with AsyncDirecto(server.url, token=ben.token) as fresh_connection:
        texts = [m["text"] for m in (await fresh_connection.messages(conversation))["items"]]
    assert texts[-10:] == [f"after {number}" for number in range(10)]


def test_workers_refuse_a_port_another_program_holds(tmp_path: Path, master_key: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTO_")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "directo", "serve", "--workers", "2", "--port",
             str(taken.getsockname()[1]), "--data-dir", str(tmp_path / "data")],
            env={**env, "DIRECTO_MASTER_KEY": master_key}, capture_output=True, text=True,
            timeout=60)
    finally:
        taken.close()
    assert done.returncode == 2
    assert "cannot listen on 127.0.0.1" in done.stderr


async def send_until_acknowledged(server: Server, token: str, conversation: str,
                                  text_: str) -> None:
    """Send as a client would: a dropped connection (its worker killed) is retried with the
    same ``client_id``, which the server answers with the original if it was stored."""
    client_id = uuid.uuid4().hex
    deadline = time.monotonic() + WAIT
    while True:
        try:
            async with AsyncDirecto(server.url, token=token) as fresh_connection:
                await fresh_connection.send(conversation, text_, client_id=client_id)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server never answered again"
            await asyncio.sleep(0.05)


async def test_killed_workers_are_replaced_and_their_clients_miss_nothing(
        server_factory, topology: Topology, people, listen) -> None:
    server = server_factory(DIRECTO_WORKERS="2", **topology.workers_env)
    ana, ben = await people.signup(server, "ana"), await people.signup(server, "ben")
    conversation = await befriend(ana, ben)
    assert ben.token is not None and ana.token is not None
    ben_hears = listen(ben)  # the SDK's stream reconnects with its cursor when dropped
    await ben_hears.ready()
    sent = [f"k{i:02}" for i in range(30)]

    originals = worker_pids(server)
    for round_, victim in enumerate(originals):  # every original worker, ben's among them
        for text_ in sent[round_ * 10:(round_ + 1) * 10]:
            await send_until_acknowledged(server, ana.token, conversation, text_)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while victim in (alive := worker_pids(server)) or len(alive) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            await asyncio.sleep(0.05)
    for text_ in sent[20:]:
        await send_until_acknowledged(server, ana.token, conversation, text_)

    await ben_hears.until(lambda me: len(me.texts()) >= len(sent), "every message")
    assert ben_hears.texts() == sent  # each once, in order
    assert not set(worker_pids(server)) & set(originals)


async def test_one_commit_is_one_publish_and_garbage_on_the_channel_stops_nothing(
        redis_server: RedisServer) -> None:
    """The broker itself: what one commit wakes goes out as one PUBLISH, and a malformed
    message on the channel is skipped without ending the listener."""
    sender, receiver = RedisBroker(redis_server.url), RedisBroker(redis_server.url)
    spy = aioredis.Redis.from_url(redis_server.url)
    published = spy.pubsub()
    await published.subscribe(CHANNEL)
    await sender.start()
    await receiver.start()
    try:
        deadline = time.monotonic() + WAIT
        while dict(await spy.pubsub_numsub(CHANNEL))[CHANNEL.encode()] < 3:
            assert time.monotonic() < deadline, "the brokers never subscribed"
            await asyncio.sleep(0.02)
        woken = {account: receiver.subscribe([account]) for account in ("a1", "a2", "a3")}
        await spy.publish(CHANNEL, b"\x00 not a Directo message")

        sender.publish({"a1", "a2", "a3"})

        for subscription in woken.values():
            await subscription.wait(WAIT)
            assert subscription.take()[0]
        messages = []
        while (message := await published.get_message(timeout=1)) is not None:
            if message["type"] == "message":
                messages.append(message["data"])
        assert messages[0] == b"\x00 not a Directo message"
        (only,) = [orjson.loads(data) for data in messages[1:]]
        assert sorted(only["wake"]) == ["a1", "a2", "a3"]
    finally:
        await sender.close()
        await receiver.close()
        await published.aclose()
        await spy.aclose()
