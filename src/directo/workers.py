"""How ``directo serve`` runs uvicorn: in one process (``serve``), or with ``--workers N`` as N
worker processes on one port, each listening through a socket of its own (``SO_REUSEPORT``),
so that the kernel spreads new connections evenly over them. Either way systemd is told when
the service is ready and, from an event loop, that it still runs (core/systemd.py).

uvicorn's own ``--workers`` shares one listening socket among its workers, and whichever
accepts first takes a whole burst of connections: in the benchmarks, all 20 load connections
landed on one worker and the other stood idle. The supervisor here starts the workers, starts
again one that dies (after a growing pause if it keeps dying young), kills and replaces one
whose event loop stopped running (a heartbeat in shared memory) and, on SIGTERM or SIGINT,
stops them all gracefully. It also gives them a directory for their metrics
(``PROMETHEUS_MULTIPROC_DIR``, see core/metrics.py), so that ``/metrics`` counts them all.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from prometheus_client.multiprocess import mark_process_dead

from directo.core.systemd import Notifier

log = logging.getLogger("directo.workers")

RESTART_PAUSE_MIN_SECONDS, RESTART_PAUSE_MAX_SECONDS = 0.5, 10.0
YOUNG_SECONDS = 10.0  # a worker that dies younger than this is restarted after a longer pause
STOP_GRACE_SECONDS = 15.0
BEAT_SECONDS = 1.0  # how often a worker's event loop says it runs
START_GRACE_SECONDS = 60.0  # how long a new worker may take to begin serving
PR_SET_PDEATHSIG = 1  # prctl(2)

# uvicorn's settings for every Directo server, and for the benchmarks' bare baseline, which
# must run the same stack. No compression of WebSocket frames: every browser offers it, and
# each stream that takes it holds zlib's state for its whole life (68 KiB per idle stream
# instead of 29, measured), to shrink event frames of a few hundred bytes.
SERVER_OPTIONS: dict[str, Any] = {
    "ws_max_size": 64 * 1024, "ws_per_message_deflate": False,
    "server_header": False}  # no "server: uvicorn": nothing to tell a scanner
STARTUP_FAILURE = 3  # uvicorn's exit code when it could not start


class PortTaken(Exception):
    """Another program holds the port."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other sockets of this user may share."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise PortTaken(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def _serve_one(app: str, options: dict[str, Any], beat: Any) -> None:
    """A worker: its own socket on the shared port, and uvicorn serving ``app`` on it. It is
    killed with its supervisor (``PR_SET_PDEATHSIG``), so that a supervisor killed with
    ``kill -9`` leaves no worker holding the port."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the supervisor died before that took effect
        return
    sock = listening_socket(options["host"], options["port"])
    _Server(uvicorn.Config(app, **options), beat).run(sockets=[sock])


def serve(app: str, options: dict[str, Any]) -> None:
    """``directo serve`` in one process: uvicorn serving ``app`` here, and systemd told how
    it does, as the supervisor tells it for N workers."""
    server = _Server(uvicorn.Config(app, **options), beat=None)
    server.run()
    if not server.started:  # the port was taken, say: uvicorn logged why
        raise SystemExit(STARTUP_FAILURE)


class _Server(uvicorn.Server):
    """uvicorn, and on its event loop: ``READY=1``, ``WATCHDOG=1`` and ``STOPPING=1`` for
    systemd when it listens (core/systemd.py; nothing in a worker, whose supervisor speaks
    for it), and the time written to ``beat`` every BEAT_SECONDS for the supervisor. A loop
    that stands still stops feeding both."""

    def __init__(self, config: uvicorn.Config, beat: Any) -> None:
        super().__init__(config)
        self._beat = beat
        self._systemd = Notifier.from_environment()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        tasks = [asyncio.create_task(self._systemd.feed_watchdog_forever())]
        if self._beat is not None:
            tasks.append(asyncio.create_task(self._beat_forever()))
        try:
            await super().serve(sockets)
        finally:
            for task in tasks:
                task.cancel()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # listening: connections are answered from now on
            self._systemd.notify("READY=1")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._systemd.notify("STOPPING=1")
        await super().shutdown(sockets)

    async def _beat_forever(self) -> None:
        while True:
            self._beat.value = time.monotonic()  # CLOCK_MONOTONIC: one clock for all processes
            await asyncio.sleep(BEAT_SECONDS)


@dataclass
class _Slot:
    process: BaseProcess | None = None
    beat: Any = None  # the worker's last heartbeat (time.monotonic()), in shared memory
    started: float = 0.0
    pause: float = RESTART_PAUSE_MIN_SECONDS
    restart_at: float = 0.0


def run(app: str, options: dict[str, Any], workers: int, hang_seconds: float) -> None:
    """Serve ``app`` (an import string, as uvicorn takes it) with ``workers`` processes
    until SIGTERM or SIGINT. ``options``: uvicorn's, ``host`` and ``port`` included. A
    worker whose event loop has not run for ``hang_seconds`` is killed and replaced."""
    # Bound, never listening: it checks the port is free for us now, and keeps another
    # user's program from taking it while workers restart. Only listening sockets are given
    # connections.
    claim = listening_socket(options["host"], options["port"])
    systemd = Notifier.from_environment(keep_to_this_process=True)
    metrics_dir = tempfile.mkdtemp(prefix="directo-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by each worker as it starts
    spawn = multiprocessing.get_context("spawn")
    stopping = False

    def stop(_signal: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    slots = [_Slot() for _ in range(workers)]
    log.info("%d workers serving http://%s:%d (supervisor %d; Ctrl+C to stop)", workers,
             options["host"], options["port"], os.getpid())
    ready, fed = False, 0.0
    try:
        while not stopping:
            now = time.monotonic()
            for slot in slots:
                _kill_if_hung(slot, now, hang_seconds)
                _tend(slot, spawn, app, options, now)
            if not ready and all(slot.beat.value for slot in slots):
                ready = True  # every worker's loop runs
                systemd.notify("READY=1")
            if systemd.watchdog_seconds is not None and now - fed >= systemd.watchdog_seconds:
                fed = now
                systemd.notify("WATCHDOG=1")
            time.sleep(0.2)
        systemd.notify("STOPPING=1")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(slots)
        claim.close()
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _kill_if_hung(slot: _Slot, now: float, hang_seconds: float) -> None:
    """SIGKILL to a worker whose loop stood still for ``hang_seconds`` (or that has not
    begun serving START_GRACE_SECONDS after it started): it answers nobody, and its clients
    reconnect to the others and to its replacement."""
    process = slot.process
    if process is None or not process.is_alive():
        return
    beat = slot.beat.value
    if beat == 0.0:
        silent, limit = now - slot.started, max(hang_seconds, START_GRACE_SECONDS)
    else:
        silent, limit = now - beat, hang_seconds
    if silent > limit:
        log.error("worker %s has not run its event loop for %.0f s; killing it", process.pid,
                  silent)
        process.kill()
        process.join()


def _tend(slot: _Slot, spawn: Any, app: str, options: dict[str, Any], now: float) -> None:
    process = slot.process
    if process is not None and process.is_alive():
        return
    if process is not None:  # it died: restart it, later if it died young
        process.join()
        if process.pid is not None:
            mark_process_dead(process.pid)  # its gauges are no longer live
        young = now - slot.started < YOUNG_SECONDS
        slot.pause = (min(slot.pause * 2, RESTART_PAUSE_MAX_SECONDS) if young
                      else RESTART_PAUSE_MIN_SECONDS)
        slot.restart_at = now + (slot.pause if young else 0.0)
        log.warning("worker %s stopped (exit code %s); starting another%s", process.pid,
                    process.exitcode, f" in {slot.pause:.1f} s" if young else "")
        slot.process = None
    if now >= slot.restart_at:
        slot.beat = spawn.Value("d", 0.0, lock=False)
        slot.process = spawn.Process(target=_serve_one, args=(app, options, slot.beat),
                                     name="directo-worker")
        slot.process.start()
        slot.started = now


def _stop_all(slots: list[_Slot]) -> None:
    """SIGTERM to every worker (uvicorn closes its connections gracefully), then SIGKILL to
    any still running after STOP_GRACE_SECONDS."""
    running = [slot.process for slot in slots if slot.process is not None]
    for process in running:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in running:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
