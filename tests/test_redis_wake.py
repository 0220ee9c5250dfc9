"""The Redis layer's wake path at unit level: the session read with the lease
(``acquire(load=True)``) and the lease given up with the last write
(``apply(release=True)``), against the shared Redis under a prefix of their own
(the ``layers`` fixture of ``tests/redis_layers.py``)."""

from __future__ import annotations

import asyncio

import pytest
from redis import asyncio as aioredis

from django_durable import WebSocketRequestResponsePair
from django_durable.exceptions import OwnershipLost
from django_durable.session.base import OPEN, AddSocket, ObjectSession, SaveSettings, SocketRecord
from django_durable.session.redis import RedisSessionLayer
from tests.redis_layers import Factory
from tests.services import REDIS_URL

KEY = "tests.Thing/object-1"


async def _stored(layer: RedisSessionLayer, *sids: str) -> ObjectSession:
    """An object with sockets ``sids`` and an auto-response pair, stored by ``layer``."""
    await layer.acquire(KEY)
    session = ObjectSession(KEY)
    session.auto_response = WebSocketRequestResponsePair("ping", "pong")
    writes = [AddSocket(SocketRecord(sid, ("all",), b"a", None, "p", OPEN, 3)) for sid in sids]
    await layer.apply(KEY, [*writes, SaveSettings()], session)
    await layer.release(KEY, session)
    return session


async def test_a_wake_reads_the_session_with_the_lease(layers: Factory) -> None:
    a, b = layers("process-a"), layers("process-b")
    await _stored(a, "s1", "s2")
    assert await b.acquire(KEY, load=True) == (True, "process-b", b.fence_token(KEY))
    assert KEY in b.preloaded
    session = await b.load(KEY)
    assert b.preloaded == {}  # taken by the wake
    assert sorted(session.sockets) == ["s1", "s2"]
    assert session.sockets["s1"].seq == 3 and session.sockets["s1"].tags == ("all",)
    assert session.auto_response == WebSocketRequestResponsePair("ping", "pong")
    assert b.auto_response(KEY) == session.auto_response
    # Another process's acquire reads nothing for it (it does not get the lease).
    assert (await a.acquire(KEY, load=True))[0] is False
    assert a.preloaded == {}


async def test_a_session_read_with_the_lease_is_not_used_once_stale(layers: Factory) -> None:
    a = layers("process-a")
    await _stored(a, "s1")
    # Given up (hibernated) before its wake: a later wake reads Redis again.
    await a.acquire(KEY, load=True)
    await a.release(KEY, ObjectSession(KEY))
    assert a.preloaded == {}
    # Sockets put back after the read (Redis lost data): dropped, and read again.
    await a.acquire(KEY, load=True)
    await a.reregister(KEY, SocketRecord("s9", ("all",), None, None, "p", OPEN, 0))
    a.forget_preloaded(KEY)
    assert sorted((await a.load(KEY)).sockets) == ["s1", "s9"]
    await a.release(KEY, ObjectSession(KEY))
    # Released here while an acquire was on its way (its script ran before the
    # release): its answer predates the release and is not believed; it asks again.
    first = (await a.acquire(KEY))[2]
    task = asyncio.ensure_future(a.acquire(KEY, load=True))
    await asyncio.sleep(0)  # (the task sent its script and waits for the reply)
    await a.release(KEY, ObjectSession(KEY))
    owned, _, token = await task
    assert owned and token != first and a.owned == {KEY: token}
    assert await a.owner(KEY) == "process-a"  # (the lease it believes it has, it has)
    assert a.preloaded[KEY][0] == token
    await a.release(KEY, ObjectSession(KEY))
    # A preload of an older token is never used either.
    await a.acquire(KEY, load=True)
    a.preloaded[KEY] = (a.owned[KEY] - 1, [], [], [])
    assert sorted((await a.load(KEY)).sockets) == ["s1", "s9"]


async def test_the_last_write_gives_the_lease_up(layers: Factory) -> None:
    a, b = layers("process-a"), layers("process-b")
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        await a.acquire(KEY)
        record = SocketRecord("s1", ("all",), None, None, "process-a", OPEN, 0)
        await a.apply(KEY, [AddSocket(record)], ObjectSession(KEY), release=True)
        assert a.owned == {} and await a.owner(KEY) is None
        assert await redis.hexists(f"{a.prefix}s:{KEY}", "s1")
        # Nothing more can be written with the lease given up.
        with pytest.raises(OwnershipLost):
            await a.apply(KEY, [AddSocket(record)], ObjectSession(KEY))
        # Released without writes: the lease goes all the same.
        assert (await b.acquire(KEY))[0] is True
        await b.apply(KEY, [], ObjectSession(KEY), release=True)
        assert b.owned == {} and await b.owner(KEY) is None
        # Refused when the lease moved: nothing written, nothing released.
        await a.acquire(KEY)
        token = a.owned[KEY]
        await a.release(KEY, ObjectSession(KEY))
        await b.acquire(KEY)
        a.owned[KEY] = token
        other = SocketRecord("s2", ("all",), None, None, "process-a", OPEN, 0)
        with pytest.raises(OwnershipLost):
            await a.apply(KEY, [AddSocket(other)], ObjectSession(KEY), release=True)
        assert await b.owner(KEY) == "process-b"
        assert not await redis.hexists(f"{a.prefix}s:{KEY}", "s2")
    finally:
        await redis.aclose()
