"""``Type=notify`` and ``WatchdogSec=`` under systemd, played by a test: a real ``directo
serve`` tells the socket in ``NOTIFY_SOCKET`` that it is ready, feeds the watchdog while its
loop runs (one process) or while the supervisor's does (``--workers N``), and says it is
stopping; when the process stands still, the feeding stops, which is how systemd knows to
restart it."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server

WATCHDOG_USEC = "400000"  # fed every 0.2 s


@pytest.fixture
def systemd() -> Iterator[tuple[str, socket.socket]]:
    """The notification socket (a short path: Unix socket paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="directo-sd-")) / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    yield str(path), listener
    listener.close()
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def received(listener: socket.socket, seconds: float) -> list[str]:
    """Every notification that arrives within ``seconds``."""
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        listener.settimeout(left)
        try:
            messages.append(listener.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def fed_only_while_running(server: Server, pid: int, listener: socket.socket) -> None:
    assert received(listener, 1.0).count("WATCHDOG=1") >= 3
    os.kill(pid, signal.SIGSTOP)  # a process that stands still, as a hung one would
    try:
        received(listener, 0.3)  # what was on its way
        assert received(listener, 1.0) == []
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "WATCHDOG=1" in received(listener, 1.0)
    server.stop()
    assert "STOPPING=1" in received(listener, 2.0)


def test_one_process_says_it_is_ready_and_feeds_the_watchdog_from_its_loop(
        server_factory, systemd) -> None:
    path, listener = systemd
    server = server_factory(NOTIFY_SOCKET=path, WATCHDOG_USEC=WATCHDOG_USEC)
    first = received(listener, 1.0)
    assert first.count("READY=1") == 1, first  # once it listened, before the first request
    assert server.process is not None
    fed_only_while_running(server, server.process.pid, listener)


def test_with_workers_only_the_supervisor_speaks_to_systemd(server_factory, systemd) -> None:
    path, listener = systemd
    server = server_factory(NOTIFY_SOCKET=path, WATCHDOG_USEC=WATCHDOG_USEC,
                            DIRECTO_WORKERS="2")
    first = received(listener, 3.0)
    assert first.count("READY=1") == 1, first  # once, when both workers run
    assert server.process is not None
    # stopping the supervisor alone silences systemd's socket: the workers, still running,
    # never write to it
    fed_only_while_running(server, server.process.pid, listener)

