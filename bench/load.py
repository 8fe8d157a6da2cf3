"""The load client: raw HTTP/1.1 keep-alive connections on asyncio, closed and open loops.

The client shares the machine's two cores with the server, so it is kept as cheap as
possible (no HTTP library on the hot path: requests are pre-formatted bytes, responses are
split on Content-Length), and every run records the client's own CPU time so the report can
say how much of the machine the client took.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

RequestFactory = Callable[[int], bytes]


class HttpError(Exception):
    """The server closed the connection or answered something we cannot parse."""


def http_request(method: str, path: str, host: str, body: Any = None,
                 token: str | None = None) -> bytes:
    """One HTTP/1.1 keep-alive request, as bytes (``body`` is sent as JSON)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    payload = b""
    if body is not None:
        payload = orjson.dumps(body)
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            waiter.set_exception(HttpError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17:stop if stop >= 0 else None])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[end + 4:total])
        del self._buffer[:total]
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc}"))
        self._transport = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; the status and body of its answer."""
        if self._transport is None:
            raise HttpError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class ConnectionPool:
    """Idle keep-alive connections to one server, opened on demand (for the open loop)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[HttpConnection] = []
        self._all: list[HttpConnection] = []

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        while self._idle and not self._idle[-1].is_open:  # the server ended its keep-alive
            self._all.remove(self._idle.pop())
        conn = self._idle.pop() if self._idle else await self._open()
        try:
            answer = await conn.request(raw)
        except HttpError:
            self._all.remove(conn)
            raise
        self._idle.append(conn)
        return answer

    async def _open(self) -> HttpConnection:
        conn = await HttpConnection.open(self.host, self.port)
        self._all.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._all:
            conn.close()


# -- measurements ---------------------------------------------------------------------------------

def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class LoadResult:
    """Latencies (seconds) of the requests that completed inside the measured window."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU time over the window's wall time (1.0 = one whole core)."""
        return self.client_cpu_seconds / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {"requests": len(ordered), "errors": self.errors,
                "seconds": round(self.seconds, 3), "throughput": round(self.throughput, 1),
                "p50_ms": round(percentile(ordered, 50) * 1000, 3),
                "p95_ms": round(percentile(ordered, 95) * 1000, 3),
                "p99_ms": round(percentile(ordered, 99) * 1000, 3),
                "client_cpu_share": round(self.client_cpu_share, 3),
                "server_cpu_share": round(self.server_cpu_seconds / self.seconds, 3)
                if self.seconds else 0.0,
                "server_cpu_us_per_request": round(
                    self.server_cpu_seconds / len(ordered) * 1e6, 1) if ordered else 0.0}


async def closed_loop(targets: list[tuple[str, int, RequestFactory]], seconds: float,
                      warmup: float = 0.5, ok: tuple[int, ...] = (200, 201),
                      server_cpu: Callable[[], float] | None = None) -> LoadResult:
    """One sender per target, each on its own connection, each sending its next request as
    soon as the previous one is answered; only requests started after ``warmup`` count.
    ``server_cpu`` reads the server's CPU seconds, to charge the window's share to it."""
    connections = [await HttpConnection.open(host, port) for host, port, _ in targets]
    result = LoadResult()
    start = time.perf_counter()
    measured_from = start + warmup
    deadline = measured_from + seconds

    async def sender(conn: HttpConnection, make: RequestFactory) -> None:
        number = 0
        while True:
            began = time.perf_counter()
            if began >= deadline:
                return
            status, _ = await conn.request(make(number))
            number += 1
            if began < measured_from:
                continue
            if status in ok:
                result.latencies.append(time.perf_counter() - began)
            else:
                result.errors += 1

    async def cpu_window() -> None:
        await asyncio.sleep(max(0.0, measured_from - time.perf_counter()))
        cpu_start = time.process_time()
        server_start = server_cpu() if server_cpu else 0.0
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        result.client_cpu_seconds = time.process_time() - cpu_start
        if server_cpu:
            result.server_cpu_seconds = server_cpu() - server_start

    try:
        await asyncio.gather(cpu_window(), *(sender(conn, make) for conn, (_, _, make)
                                             in zip(connections, targets, strict=True)))
    finally:
        for conn in connections:
            conn.close()
    result.seconds = seconds
    return result


async def open_loop(rate: float, seconds: float,
                    fire: Callable[[int], Coroutine[Any, Any, None]]) -> float:
    """Start ``fire(i)`` at ``i / rate`` seconds, whether or not earlier ones finished;
    wait for all of them. Returns the worst lateness of a start (seconds), so a report can
    tell when the client itself could not keep the schedule."""
    start = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    worst_lag = 0.0
    for number in range(int(rate * seconds)):
        target = start + number / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_lag = max(worst_lag, time.perf_counter() - target)
        tasks.append(asyncio.create_task(fire(number)))
    await asyncio.gather(*tasks)
    return worst_lag


# -- idle WebSockets --------------------------------------------------------------------------

class IdleWebSocket(asyncio.Protocol):
    """A WebSocket that completes its handshake, answers the server's pings (as any client
    library does, or the server drops it) and ignores every other frame: the cheapest way for
    the client to hold thousands of them."""

    def __init__(self) -> None:
        self.upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.upgraded.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded.set_result(bytes(self._buffer[9:12]) == b"101")
            del self._buffer[:end + 4]
        self._answer_pings()

    def _answer_pings(self) -> None:
        """Consume whole frames from the buffer (servers do not mask theirs); pong each ping."""
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length >= 126:
                start = 4 if length == 126 else 10
                if len(buffer) < start:
                    return
                length = int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start:start + length])
            del buffer[:start + length]
            if opcode == 0x9 and self.transport is not None:
                mask = os.urandom(4)
                masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + mask + masked)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_result(False)
        self.transport = None

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


async def open_idle_websocket(host: str, port: int, path: str,
                              token: str | None = None) -> IdleWebSocket:
    key = base64.b64encode(os.urandom(16)).decode()
    # compression offered as every browser offers it: a server that took it would pay for
    # it on every idle stream, and the benchmark must see that
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(IdleWebSocket, host, port)
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    if not await asyncio.wait_for(protocol.upgraded, 30):
        transport.close()
        raise HttpError("WebSocket upgrade refused")
    return protocol
