"""Frames a handler holds for other processes, pushed with its writes, against a real Redis.

The Redis transport's delivery to sockets (``redis/to_sockets.py`` with
``redis/pending_frames.py``) on one ``RedisSessionLayer`` that owns the object, and a
second process that is only a name: its inbox is a list nobody reads, so what is in it
is exactly what was pushed. What must hold (docs/architecture.md, "Exactly once"):
held frames reach Redis in the same script as the writes and never without them, in
order with anything else sent to the same process; an inbox left past its bound makes
the next send wait for room and fail (``DeliveryFailed``) if none comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from django_durable.exceptions import DeliveryFailed, OwnershipLost
from django_durable.redis import couriers as couriers_module
from django_durable.redis import pending_frames
from django_durable.redis.couriers import Couriers
from django_durable.redis.inbox import unpack
from django_durable.redis.to_sockets import ToSockets
from django_durable.session.base import OPEN, ObjectSession, SocketRecord, UpdateSocket
from django_durable.session.redis import RedisSessionLayer
from tests.services import REDIS_URL, delete_redis_prefix, need
from tests.waiting import wait_until

KEY = "tests.Thing/held-frames"
FAR = "process-b"


class Parts(ToSockets):
    """The delivery part alone (no channel layer, no gateways), inbox bound ``capacity``."""

    def __init__(self, layer: RedisSessionLayer, capacity: int) -> None:
        self.layer = layer
        self.channel = layer.holder
        self.runtime: Any = SimpleNamespace(sockets={})
        self.capacity = capacity
        self._pending: dict[str, dict[str, list[Any]]] = {}
        self._pushing: dict[str, asyncio.Event] = {}
        self._over_bound: set[str] = set()
        self._late: dict[str, asyncio.TimerHandle] = {}
        self._late_failure: dict[str, Exception] = {}
        self._chores: set[asyncio.Task[None]] = set()
        self.couriers = Couriers(layer, self._inbox_capacity, self._alive)

    def _inbox_capacity(self, channel: str) -> int:
        return self.capacity

    async def _alive(self, holder: str) -> bool:
        return False  # never gone: a full inbox is waited for until the deadline


@pytest.fixture
async def parts(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Parts]:
    need("redis")
    # Held until the writes, however slowly this test goes (one test shortens it).
    monkeypatch.setattr(pending_frames, "HOLD_FOR", 3600.0)
    prefix = f"unit-{uuid.uuid4().hex[:12]}:"
    layer = RedisSessionLayer(hosts=[REDIS_URL], prefix=prefix, lease_time=5.0)
    layer.holder = "process-a"
    await layer.acquire(KEY)
    made = Parts(layer, capacity=3)
    yield made
    for courier in made.couriers.couriers.values():
        if courier.task is not None:
            courier.task.cancel()
            with contextlib.suppress(BaseException):
                await courier.task
    await layer.close()
    await delete_redis_prefix(prefix)


FAR_SOCKET = SocketRecord("far-1", holder=FAR, state=OPEN)


async def send(parts: Parts, text: str, hold: bool = True) -> int:
    message = {"type": "websocket.send", "text": text, "num": [1, 1, 1, "src", 1, 1]}
    return await parts.send(KEY, [FAR_SOCKET], message, hold)


async def inbox(parts: Parts) -> list[Any]:
    """What the far process would read, in order (``text`` of a frame, else the type)."""
    raw = await parts.layer.redis.lrange(parts.layer.key_names.inbox(FAR), 0, -1)
    return [m.get("text", m["type"]) for m in map(unpack, raw)]


async def store(parts: Parts, seq: int) -> None:
    record = SocketRecord("src", holder="process-a", state=OPEN, seq=seq)
    await parts.store(KEY, [UpdateSocket(record)], ObjectSession(KEY))


async def stored_seq(parts: Parts) -> bool:
    return bool(await parts.layer.redis.hexists(parts.layer.key_names.sockets(KEY), "src"))


async def test_held_frames_reach_the_inbox_with_the_writes_and_the_waiting_acks(
    parts: Parts,
) -> None:
    assert await send(parts, "a") == 1  # counted as sent
    assert await send(parts, "b") == 1
    assert await inbox(parts) == []  # held: not in Redis before the writes
    parts.couriers.ack(FAR, [["far-1", 7]])
    await store(parts, 1)
    assert await inbox(parts) == ["durable.ack", "a", "b"]  # one script: all together
    assert await stored_seq(parts)
    assert parts._pending == {}


async def test_frames_of_a_handler_that_runs_on_go_without_waiting_for_its_end(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pending_frames, "HOLD_FOR", 0.002)
    await send(parts, "a")
    # The handler awaits something else now (a storage call, a slow API): its frame
    # goes after HOLD_FOR, the old way, and its writes later do not push it again.
    await wait_until(lambda: inbox(parts), accept=lambda got: got == ["a"], message="the late push")
    await send(parts, "b")
    await store(parts, 1)
    assert await inbox(parts) == ["a", "b"]
    assert await stored_seq(parts)


async def test_a_refused_write_pushes_none_of_its_frames(parts: Parts) -> None:
    await send(parts, "a")
    await parts.layer.redis.delete(parts.layer.key_names.lease(KEY))  # the lease is lost
    with pytest.raises(OwnershipLost):
        await store(parts, 1)
    # The event is handled again by the next owner, whose run sends the frames.
    assert await inbox(parts) == []
    assert not await stored_seq(parts)
    assert parts._pending == {}


async def test_a_close_by_another_path_goes_after_the_held_frames(parts: Parts) -> None:
    await send(parts, "a")
    await send(parts, "b")
    await parts.close(KEY, FAR_SOCKET, 1000, "")
    assert await inbox(parts) == ["a", "b", "durable.close"]
    await store(parts, 1)  # nothing left to push
    assert await inbox(parts) == ["a", "b", "durable.close"]


async def test_a_handler_holds_at_most_an_inbox_bound_and_sends_the_rest_the_old_way(
    parts: Parts,
) -> None:
    for text in "abcd":
        await send(parts, text)
    # The fourth found three held (the bound): those went the old way, it is held.
    assert await inbox(parts) == ["a", "b", "c"]
    await parts.layer.redis.lpop(parts.layer.key_names.inbox(FAR), 3)  # read
    await store(parts, 1)
    assert await inbox(parts) == ["d"]


async def test_an_inbox_left_past_its_bound_makes_the_next_send_wait_and_fail(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(couriers_module, "SEND_TIMEOUT", 0.3)
    redis, far_inbox = parts.layer.redis, parts.layer.key_names.inbox(FAR)
    for text in "abc":
        await send(parts, text)
    await store(parts, 1)
    assert parts._over_bound == set()  # at its bound, not past it
    await send(parts, "d")
    await store(parts, 2)  # pushed anyway: the handler believed it sent
    assert await inbox(parts) == ["a", "b", "c", "d"]
    assert parts._over_bound == {FAR}
    # The next send is not held: it waits for room, and none comes.
    with pytest.raises(DeliveryFailed):
        await send(parts, "e")
    assert await inbox(parts) == ["a", "b", "c", "d"]  # nothing dropped, nothing past
    # The far process reads its inbox: a send goes through, the mark goes with it.
    await redis.delete(far_inbox)
    await send(parts, "f")
    assert await inbox(parts) == ["f"]
    assert parts._over_bound == set()
    await send(parts, "g")  # held again
    assert await inbox(parts) == ["f"]
    await store(parts, 3)
    assert await inbox(parts) == ["f", "g"]
