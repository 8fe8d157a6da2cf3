"""The hub of ``directo serve --workers N`` (core/hub.py) and a worker's side of it
(core/hub_broker.py), in one process: a real hub thread on a real Unix socket, and brokers
that stand for the workers. The processes themselves are tested in test_scale_out.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter

from directo.core.broker import Subscription
from directo.core.errors import DirectoError
from directo.core.hub import HubThread
from directo.core.hub_broker import HubBroker, HubStorage

WAIT = 10.0


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubThread]:
    thread = HubThread(tmp_path).start()
    yield thread
    thread.stop()


@pytest.fixture
async def workers(hub: HubThread) -> AsyncIterator[list[HubBroker]]:
    brokers = [HubBroker(hub.path) for _ in range(3)]
    for broker in brokers:
        await broker.start()
    yield brokers
    for broker in brokers:
        await broker.close()


async def woken(subscription: Subscription) -> tuple[bool, list[dict[str, object]]]:
    await subscription.wait(WAIT)
    return subscription.take()


async def test_wake_ups_and_typing_reach_every_other_worker_once(
        workers: list[HubBroker]) -> None:
    one, two, _ = workers
    on_one, on_two, on_three = (w.subscribe(["ana"]) for w in workers)

    one.publish({"ana"})
    for subscription in (on_one, on_two, on_three):
        assert (await woken(subscription))[0]

    typing = {"type": "typing", "data": {"conversation_id": "c1"}}
    two.publish_ephemeral({"ana", "ben"}, typing)
    for subscription in (on_one, on_two, on_three):
        changed, ephemeral = await woken(subscription)
        assert (changed, ephemeral) == (False, [typing])  # once, not once per account
    await asyncio.sleep(0.1)  # nothing more comes: the hub sends no echo to its sender
    assert on_two.take() == (False, [])


async def test_presence_ends_with_the_connection_of_the_worker_holding_the_stream(
        hub: HubThread) -> None:
    holder, viewer = HubBroker(hub.path), HubBroker(hub.path)
    await holder.start()
    await viewer.start()
    try:
        assert await viewer.presence("ana") == (False, None)
        holder.stream_opened("ana")
        holder.stream_opened("ana")  # two devices
        await until_presence_is(viewer, "ana", True)
        holder.stream_closed("ana")
        await asyncio.sleep(0.1)
        assert (await viewer.presence("ana")).online  # one device still connected
        before = time.time()
        await holder.close()  # the worker went away (killed, say) with the stream open
        seen = await until_presence_is(viewer, "ana", False)
        assert seen.last_seen is not None and seen.last_seen >= before - 1
    finally:
        await viewer.close()


async def until_presence_is(broker: HubBroker, account: str, online: bool):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while (seen := await broker.presence(account)).online is not online:
        assert time.monotonic() < deadline, f"{account} never became online={online}"
        await asyncio.sleep(0.02)
    return seen


async def test_workers_spend_one_budget_and_a_lost_hub_enforces_none(
        hub: HubThread, workers: list[HubBroker]) -> None:
    limiters = [FixedWindowRateLimiter(HubStorage(broker)) for broker in workers]
    per_minute = RateLimitItemPerMinute(4)
    granted = [await limiters[n % 3].hit(per_minute, "ana") for n in range(6)]
    assert granted == [True] * 4 + [False] * 2

    hub.stop()
    await asyncio.sleep(0.1)
    with pytest.raises(Exception) as unreachable:  # the caller (core/ratelimit) lets it pass
        await limiters[0].hit(per_minute, "ana")
    assert type(unreachable.value).__name__ == "StorageError"
    with pytest.raises(DirectoError) as no_presence:
        await workers[0].presence("ana")
    assert no_presence.value.status == 503


async def test_a_malformed_line_ends_only_its_own_connection(
        hub: HubThread, workers: list[HubBroker]) -> None:
    reader, writer = await asyncio.open_unix_connection(str(hub.path))
    writer.write(b"\x00 not a hub message\n")
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # hung up on
    writer.close()

    on_three = workers[2].subscribe(["ana"])
    workers[0].publish({"ana"})
    assert (await woken(on_three))[0]


async def test_a_worker_reconnects_to_a_restarted_hub_and_reports_its_streams_again(
        tmp_path: Path) -> None:
    first = HubThread(tmp_path).start()
    holder, viewer = HubBroker(first.path), HubBroker(first.path)
    await holder.start()
    await viewer.start()
    try:
        holder.stream_opened("ana")
        waiting = holder.subscribe(["ana"])
        await until_presence_is(viewer, "ana", True)
        first.stop()
        second = HubThread(tmp_path).start()
        try:
            # the holder re-reads its streams (what was published meanwhile is lost) and
            # tells the new hub about its open stream
            assert (await woken(waiting))[0]
            await until_presence_is(viewer, "ana", True)
            viewer.publish({"ana"})
            assert (await woken(waiting))[0]
        finally:
            second.stop()
    finally:
        await holder.close()
        await viewer.close()
