"""Starting and stopping the app: background loops end cleanly."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

from directo.app import App
from directo.config import Settings


async def test_stopping_right_after_start_reports_no_error(
        settings_factory: Callable[..., Settings]) -> None:
    """The housekeeping's first round queries the database as the app starts. An app stopped
    meanwhile (a test, a deploy that changes its mind) lets that round finish: cut off
    midway (as its pool was still connecting, say), asyncpg reported the end of a
    connection it was opening as an error that nobody awaited."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        for pause in (0, 0.001, 0.002, 0.004, 0.008):  # the round's connecting, querying...
            app = App(settings_factory())
            await app.start()
            await asyncio.sleep(pause)
            await app.stop()
        await asyncio.sleep(0.2)  # anything still on its way out
        gc.collect()  # a future never awaited is reported when it is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [context.get("message") for context in reported] == []
