"""Small helpers shared by the API tests: expected refusals, ready-made conversations, what
the database holds, and what ``/metrics`` says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, select

from directo.app import App
from directo.client import AsyncDirecto, DirectoAPIError
from directo.core.db import metadata

Signup = Callable[..., Awaitable[AsyncDirecto]]


async def refused(call: Awaitable[Any], status: int, code: str) -> DirectoAPIError:
    """Await ``call`` and check it was refused with ``status`` and error ``code``."""
    with pytest.raises(DirectoAPIError) as error:
        await call
    assert (error.value.status, error.value.code) == (status, code), error.value
    return error.value


async def friends(signup: Signup, first: str = "ana", second: str = "ben",
                  ) -> tuple[AsyncDirecto, AsyncDirecto, str]:
    """Two accounts that follow each other, and the id of their conversation (inbox both ways)."""
    one, two = await signup(first), await signup(second)
    await one.follow(second)
    await two.follow(first)
    conversation = await one.start_conversation(second)
    return one, two, conversation["id"]


async def drain(sdk: AsyncDirecto) -> list[dict[str, Any]]:
    """Every stored event after the SDK's cursor, without waiting."""
    return (await sdk.poll(timeout=0))["events"]


def database_snapshot(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show a refused request changed nothing at all."""
    def read(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
        return {table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
                for table in metadata.sorted_tables}

    return app.db.read_sync(read)


def metric(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples named exactly ``name`` (any labels)."""
    values = [sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.name == name]
    assert values, f"{name} is not in /metrics"
    return sum(values)


async def presence(viewer: AsyncDirecto, handle: str) -> dict[str, Any]:
    """What ``viewer`` is told of the presence of ``handle``."""
    return dict((await viewer.request("GET", f"/accounts/{handle}/presence")).json())


async def until_online(viewer: AsyncDirecto, handle: str, online: bool,
                       wait: float = 20.0) -> dict[str, Any]:
    """Ask until ``handle`` shows ``online`` (it follows streams opening and closing
    elsewhere, so it may take a moment); fail after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        seen = await presence(viewer, handle)
        if seen["online"] is online:
            return seen
        await asyncio.sleep(0.05)
    pytest.fail(f"{handle} never became {'online' if online else 'offline'}")

