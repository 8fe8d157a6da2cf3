"""``directo serve --workers N``: N worker processes on one port, each listening through a
socket of its own (``SO_REUSEPORT``), so that the kernel spreads new connections evenly over
them.

uvicorn's own ``--workers`` shares one listening socket among its workers, and whichever
accepts first takes a whole burst of connections: in the benchmarks, all 20 load connections
landed on one worker and the other stood idle. The supervisor here starts the workers, starts
again one that dies (after a growing pause if it keeps dying young) and, on SIGTERM or SIGINT,
stops them all gracefully. It also gives them a directory for their metrics
(``PROMETHEUS_MULTIPROC_DIR``, see core/metrics.py), so that ``/metrics`` counts them all.
"""

from __future__ import annotations

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

log = logging.getLogger("directo.workers")

RESTART_PAUSE_MIN_SECONDS, RESTART_PAUSE_MAX_SECONDS = 0.5, 10.0
YOUNG_SECONDS = 10.0  # a worker that dies younger than this is restarted after a longer pause
STOP_GRACE_SECONDS = 15.0
PR_SET_PDEATHSIG = 1  # prctl(2)


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


def _serve_one(app: str, options: dict[str, Any]) -> None:
    """A worker: its own socket on the shared port, and uvicorn serving ``app`` on it. It is
    killed with its supervisor (``PR_SET_PDEATHSIG``), so that a supervisor killed with
    ``kill -9`` leaves no worker holding the port."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the supervisor died before that took effect
        return
    sock = listening_socket(options["host"], options["port"])
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])


@dataclass
class _Slot:
    process: BaseProcess | None = None
    started: float = 0.0
    pause: float = RESTART_PAUSE_MIN_SECONDS
    restart_at: float = 0.0


def run(app: str, options: dict[str, Any], workers: int) -> None:
    """Serve ``app`` (an import string, as uvicorn takes it) with ``workers`` processes
    until SIGTERM or SIGINT. ``options``: uvicorn's, ``host`` and ``port`` included."""
    # Bound, never listening: it checks the port is free for us now, and keeps another
    # user's program from taking it while workers restart. Only listening sockets are given
    # connections.
    claim = listening_socket(options["host"], options["port"])
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
    try:
        while not stopping:
            now = time.monotonic()
            for slot in slots:
                _tend(slot, spawn, app, options, now)
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(slots)
        claim.close()
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(metrics_dir, ignore_errors=True)


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
        slot.process = spawn.Process(target=_serve_one, args=(app, options),
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
