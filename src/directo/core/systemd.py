"""systemd's service notifications (``sd_notify(3)``): ``READY=1`` once serving,
``WATCHDOG=1`` while serving, ``STOPPING=1`` on the way out.

All of it is a no-op unless systemd asks for it: ``Type=notify`` sets ``NOTIFY_SOCKET`` and
``WatchdogSec=`` sets ``WATCHDOG_USEC``. A notification is one datagram on a Unix socket,
so this is a few lines rather than a dependency (the maintained binding, ``systemd-python``,
is compiled against libsystemd). The watchdog is fed from the event loop itself (one
process) or from the supervisor's loop (``--workers N``, which watches its workers' loops in
turn): if the loop stands still, systemd stops hearing from it and restarts the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass(frozen=True)
class Notifier:
    address: str | None  # None: systemd does not listen
    watchdog_seconds: float | None  # how often to feed the watchdog (half its timeout)

    @classmethod
    def from_environment(cls, keep_to_this_process: bool = False) -> Notifier:
        """What systemd asked of this process. ``keep_to_this_process``: and take it out of
        the environment, so that processes started from here on (workers) stay silent:
        systemd listens to the main process only."""
        address = os.environ.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
        watchdog = None
        if usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid())):
            watchdog = int(usec) / 2_000_000
        if keep_to_this_process:
            for name in _VARIABLES:
                os.environ.pop(name, None)
        return cls(address, watchdog if address is not None else None)

    def notify(self, state: str) -> None:
        """Send ``state`` to systemd, if it listens; never raises."""
        if self.address is None:
            return
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), self.address)

    async def feed_watchdog_forever(self) -> None:
        """From the event loop: a loop that stands still stops feeding it."""
        if self.watchdog_seconds is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_seconds)
