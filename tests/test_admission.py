"""A socket's numbered events: admitted once and in order, stored as handled only when
their own handler is done (in process, with the in-memory session layer)."""

from __future__ import annotations

import asyncio

from django_durable import DurableConsumer, DurableWebSocket
from django_durable.events import MESSAGE, Event
from django_durable.runtime import get_runtime
from django_durable.session.base import OPEN, SocketRecord
from tests.waiting import wait_until

handled: list[str] = []
started: dict[str, asyncio.Event] = {}
release: dict[str, asyncio.Event] = {}


class Batch(DurableConsumer):
    durable_name = "tests.admission.Batch"

    async def websocket_message(self, ws: DurableWebSocket, message: str | bytes) -> None:
        text = str(message)
        if text in started:
            started[text].set()
            await release[text].wait()
        handled.append(text)


async def test_events_admitted_together_are_stored_as_handled_one_by_one() -> None:
    """Events 2 and 3 arrive first (held), then 1: all three become ready at once. While
    2's handler runs, only 1 may be recorded as handled; recording 3 (the batch's last)
    would make an owner that dies now lose 2 and 3 for good."""
    handled.clear()
    started["two"], release["two"] = asyncio.Event(), asyncio.Event()
    runtime = get_runtime()
    key = Batch.object_key("held-batch")
    await runtime.layer.add_socket(key, SocketRecord("s1", holder="elsewhere", state=OPEN))
    for seq, text in ((2, "two"), (3, "three"), (1, "one")):
        runtime.dispatcher.put(Batch, "held-batch", key, Event(MESSAGE, "s1", text, seq=seq))

    def stored_seq() -> int:
        return runtime.layer.sessions[key].sockets["s1"].seq  # type: ignore[attr-defined,no-any-return]

    async with asyncio.timeout(10):
        await started["two"].wait()
    assert handled == ["one"]
    assert stored_seq() == 1
    release["two"].set()
    await wait_until(lambda: handled == ["one", "two", "three"], message="all three handled")
    await wait_until(stored_seq, message="event 3 stored as handled", accept=lambda s: s == 3)


async def test_a_repeat_of_an_admitted_event_runs_nothing_again() -> None:
    """A number sent again while its handler still runs (a re-send crossing the first)."""
    handled.clear()
    started["slow"], release["slow"] = asyncio.Event(), asyncio.Event()
    runtime = get_runtime()
    key = Batch.object_key("repeat")
    await runtime.layer.add_socket(key, SocketRecord("s1", holder="elsewhere", state=OPEN))
    runtime.dispatcher.put(Batch, "repeat", key, Event(MESSAGE, "s1", "slow", seq=1))
    async with asyncio.timeout(10):
        await started["slow"].wait()
    runtime.dispatcher.put(Batch, "repeat", key, Event(MESSAGE, "s1", "slow", seq=1))
    runtime.dispatcher.put(Batch, "repeat", key, Event(MESSAGE, "s1", "next", seq=2))
    release["slow"].set()
    await wait_until(lambda: handled == ["slow", "next"], message="each event once")
    await runtime.dispatcher.hibernate(key)
    assert handled == ["slow", "next"]
