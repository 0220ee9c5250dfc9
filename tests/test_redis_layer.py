"""``RedisSessionLayer`` at unit level, against a real Redis.

Two layer instances with different holder names stand for two processes. Tests on
the shared Redis use a key prefix of their own (and delete their keys afterwards);
tests that flush or restart Redis start a private ``redis-server``
(``tests.redis_server``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from django_durable import WebSocketRequestResponsePair, metrics
from django_durable.exceptions import OwnershipLost, SessionLayerUnavailable
from django_durable.session.base import (
    CLOSING,
    OPEN,
    AddSocket,
    ObjectSession,
    RemoveSocket,
    SaveSettings,
    SocketRecord,
    UpdateSocket,
)
from django_durable.session.redis import RIDE_THROUGH, RedisSessionLayer
from tests.daphne_server import free_port
from tests.redis_layers import Factory, make_layers
from tests.redis_server import PrivateRedis, private_redis
from tests.services import REDIS_URL
from tests.waiting import wait_until

KEY = "tests.Thing/object-1"


@pytest.fixture
def own_redis() -> Any:
    with private_redis() as server:
        yield server


@pytest.fixture
async def redis(layers: Factory) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the shared Redis, to look at what the layer stored."""
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def snapshot(client: aioredis.Redis, prefix: str, key: str = KEY) -> dict[str, Any]:
    """Everything stored for ``key`` but its lease."""
    return {
        "sockets": await client.hgetall(f"{prefix}s:{key}"),
        "stamps": await client.hgetall(f"{prefix}t:{key}"),
        "settings": await client.hgetall(f"{prefix}c:{key}"),
    }


async def expired(layer: RedisSessionLayer) -> None:
    """Wait (bounded) until the lease of ``KEY`` expired on the live clock.

    Redis keeps the key longer (it outlives outages); ``owner()`` says it is over.
    """
    await wait_until(
        lambda: layer.owner(KEY),
        accept=lambda owner: owner is None,
        message=f"the lease of {KEY} to expire",
        interval=0.01,
    )


async def outlived(a: RedisSessionLayer, b: RedisSessionLayer, holder: str) -> None:
    """Wait (bounded) until ``b`` finds ``holder`` dead, ticking for ``a`` and ``b``
    meanwhile (heartbeats, ``a``'s lease on ``KEY``) so that they stay alive."""

    async def still_alive() -> set[str]:
        alive = await b.alive([holder])
        if alive:
            await b.heartbeat()
            await a.renew([KEY])
        return alive

    await wait_until(
        still_alive,
        accept=lambda alive: not alive,
        message=f"{holder} to be found dead",
        interval=0.05,
    )


def lease_of(value: bytes | None) -> str:
    """``"<holder>|<token>"`` of a stored lease (without its expiry)."""
    assert value is not None
    return value.decode().rsplit("|", 1)[0]


def record(sid: str, **kwargs: Any) -> SocketRecord:
    kwargs.setdefault("holder", "process-a")
    kwargs.setdefault("state", OPEN)
    return SocketRecord(sid, **kwargs)


# Leases ---------------------------------------------------------------------------------


async def test_acquire_renew_release(layers: Factory, redis: aioredis.Redis, prefix: str) -> None:
    a, b = layers("process-a"), layers("process-b")
    owned, holder, token = await a.acquire(KEY)
    assert (owned, holder) == (True, "process-a")
    assert a.fence_token(KEY) == token and a.owned == {KEY: token}
    assert await a.owner(KEY) == await b.owner(KEY) == "process-a"

    # Another process cannot take it, and learns who holds it.
    assert await b.acquire(KEY) == (False, "process-a", token)
    assert b.fence_token(KEY) is None
    # The holder taking it again keeps its token and extends the lease.
    assert await a.acquire(KEY) == (True, "process-a", token)
    assert await a.renew([KEY]) == []
    # Redis keeps the key past the lease, so that an outage does not expire it.
    assert 5000 < await redis.pttl(f"{prefix}l:{KEY}") <= 5000 + RIDE_THROUGH * 1000
    # Renewing or releasing someone else's lease does nothing to it.
    assert await b.renew([KEY]) == [KEY]
    await b.release(KEY, ObjectSession(KEY))
    assert await b.owner(KEY) == "process-a"

    await a.release(KEY, ObjectSession(KEY))
    assert await a.owner(KEY) is None
    assert a.owned == {}
    owned, holder, token_b = await b.acquire(KEY)
    assert (owned, holder) == (True, "process-b")
    assert token_b > token


async def test_an_expired_lease_is_reported_lost_and_is_free(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a, b = layers("process-a", lease_time=0.2), layers("process-b")
    _, _, token = await a.acquire(KEY)
    await expired(a)
    assert await a.owner(KEY) is None
    # Expired but taken by nobody: the token is still the last, so a may renew it.
    assert await a.renew([KEY]) == []
    assert await a.owner(KEY) == "process-a"
    await expired(a)
    owned, _, token_b = await b.acquire(KEY)
    assert owned and token_b > token
    assert await a.renew([KEY]) == [KEY]
    assert a.fence_token(KEY) is None


async def test_taking_an_expired_lease_of_another_process_counts_as_a_takeover(
    layers: Factory,
) -> None:
    a, b = layers("process-a", lease_time=0.2), layers("process-b", lease_time=0.2)
    before = metrics.value("lease_takeovers")
    await a.acquire(KEY)
    await a.acquire(KEY)  # renewing its own lease is no takeover
    await a.release(KEY, ObjectSession(KEY))
    await b.acquire(KEY)  # a released it (a graceful hand-over): no takeover either
    assert metrics.value("lease_takeovers") == before
    await expired(b)
    owned, holder, _ = await a.acquire(KEY)  # b's lease ran out: a takes the object
    assert (owned, holder) == (True, "process-a")
    assert metrics.value("lease_takeovers") == before + 1


async def test_a_stale_release_leaves_the_new_owners_lease(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a, b = layers("process-a", lease_time=0.2), layers("process-b")
    await a.acquire(KEY)
    await expired(a)
    _, _, token_b = await b.acquire(KEY)
    # a never noticed it lost the lease: its release must not end b's.
    assert KEY in a.owned
    await a.release(KEY, ObjectSession(KEY))
    assert lease_of(await redis.get(f"{prefix}l:{KEY}")) == f"process-b|{token_b}"


@pytest.mark.e2e  # a private redis-server
async def test_tokens_keep_growing_after_redis_loses_everything(
    own_redis: PrivateRedis, prefix: str
) -> None:
    async for make in make_layers(own_redis.url(), prefix):
        layer = make("process-a")
        tokens = []
        for _ in range(50):
            tokens.append((await layer.acquire(KEY))[2])
            await layer.release(KEY, ObjectSession(KEY))
        client = aioredis.Redis.from_url(own_redis.url())
        try:
            assert await client.exists(f"{prefix}f:{KEY}")
            await client.flushall()
            tokens.append((await layer.acquire(KEY))[2])
            await layer.release(KEY, ObjectSession(KEY))
        finally:
            await client.aclose()
        # Restarted empty (no persistence): a new connection, the same growth.
        own_redis.restart()
        tokens.append((await make("process-b").acquire(KEY))[2])
        assert tokens == sorted(set(tokens)), tokens


# Fencing --------------------------------------------------------------------------------


async def test_a_write_after_losing_the_lease_raises_and_writes_nothing(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a, b = layers("process-a", lease_time=0.3), layers("process-b")
    await a.acquire(KEY)
    session = ObjectSession(KEY)
    first = record("s1", tags=("all",), attachment=b"one")
    session.sockets["s1"] = first
    session.auto_response = WebSocketRequestResponsePair("ping", "pong")
    await a.apply(KEY, [AddSocket(first), SaveSettings()], session)
    await a.touch_auto_response(KEY, "s1", 1.5)
    await a.flush_stamps()

    # a's lease runs out (a stalled process); b takes the object.
    await expired(a)
    _, _, token_b = await b.acquire(KEY)
    before = await snapshot(redis, prefix)

    first.attachment = b"stale"
    second = record("s2")
    session.auto_response = None
    writes = [UpdateSocket(first), AddSocket(second), RemoveSocket("s1"), SaveSettings()]
    with pytest.raises(OwnershipLost, match="no longer owns"):
        await a.apply(KEY, writes, session)
    for write in (
        a.add_socket(KEY, second),
        a.update_socket(KEY, first),
        a.remove_socket(KEY, "s1"),
        a.save_settings(session),
    ):
        with pytest.raises(OwnershipLost):
            await write
    assert await snapshot(redis, prefix) == before
    assert lease_of(await redis.get(f"{prefix}l:{KEY}")) == f"process-b|{token_b}"
    assert a.fence_token(KEY) is None

    # The new owner's writes go through.
    await b.apply(KEY, [RemoveSocket("s1")], ObjectSession(KEY))
    assert (await b.load(KEY)).sockets == {}


async def test_a_write_with_no_lease_at_all_is_refused(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a = layers("process-a")
    with pytest.raises(OwnershipLost):
        await a.add_socket(KEY, record("s1"))  # never acquired
    await a.acquire(KEY)
    await redis.delete(f"{prefix}l:{KEY}")  # as Redis losing it
    with pytest.raises(OwnershipLost):
        await a.add_socket(KEY, record("s1"))
    assert await snapshot(redis, prefix) == {"sockets": {}, "stamps": {}, "settings": {}}


# What is stored ---------------------------------------------------------------------------


async def test_load_and_apply_round_trip(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a, b = layers("process-a"), layers("process-b")
    assert (await b.load(KEY)).is_empty()
    await a.acquire(KEY)
    session = ObjectSession(KEY)
    one = record("s1", tags=("all", "", "ünïcödé"), attachment=b"\x00\xff", seq=5)
    two = record("s2", holder="process-b", state=CLOSING)
    gone = record("s3")
    session.auto_response = WebSocketRequestResponsePair("ping", b"\x00pong")
    session.event_timeout_ms = 1234
    await a.apply(
        KEY,
        [
            AddSocket(one),
            AddSocket(gone),
            AddSocket(two),
            UpdateSocket(gone),
            RemoveSocket("s3"),
            SaveSettings(),
        ],
        session,
    )
    await a.touch_auto_response(KEY, "s1", 1_700_000_000.25)
    # Noted, then written with the rest of the half second's timestamps.
    assert await redis.hget(f"{prefix}t:{KEY}", "s1") is None
    assert await a.flush_stamps() == {KEY: ("process-a", {"s1": 1_700_000_000.25})}
    assert await a.flush_stamps() == {}

    loaded = await b.load(KEY)  # as another process sees it
    assert sorted(loaded.sockets) == ["s1", "s2"]
    got = loaded.sockets["s1"]
    assert (got.tags, got.attachment, got.holder, got.state, got.seq) == (
        ("all", "", "ünïcödé"),
        b"\x00\xff",
        "process-a",
        OPEN,
        5,
    )
    assert got.auto_response_at == 1_700_000_000.25
    got = loaded.sockets["s2"]
    assert (got.tags, got.attachment, got.holder, got.state, got.seq) == (
        (),
        None,
        "process-b",
        CLOSING,
        0,
    )
    assert got.auto_response_at is None
    assert loaded.auto_response == WebSocketRequestResponsePair("ping", b"\x00pong")
    assert isinstance(loaded.auto_response.response, bytes)
    assert loaded.event_timeout_ms == 1234
    assert b.auto_response(KEY) == loaded.auto_response

    # Updates replace, removals take the timestamp along, cleared settings load as None.
    one.attachment = b"two"
    one.seq = 6
    session.auto_response = None
    session.event_timeout_ms = None
    await a.apply(KEY, [UpdateSocket(one), RemoveSocket("s2"), SaveSettings()], session)
    loaded = await b.load(KEY)
    assert list(loaded.sockets) == ["s1"]
    assert (loaded.sockets["s1"].attachment, loaded.sockets["s1"].seq) == (b"two", 6)
    assert loaded.auto_response is None and loaded.event_timeout_ms is None
    assert a.auto_response(KEY) is None


async def test_auto_response_timestamps_only_for_registered_sockets(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a = layers("process-a")
    await a.acquire(KEY)
    stamps = f"{prefix}t:{KEY}"
    await a.touch_auto_response(KEY, "never-accepted", 10.0)
    await a.flush_stamps()
    assert await redis.hgetall(stamps) == {}
    await a.add_socket(KEY, record("s1"))
    await a.touch_auto_response(KEY, "s1", 11.0)
    await a.flush_stamps()
    assert float(await redis.hget(stamps, "s1")) == 11.0
    await a.remove_socket(KEY, "s1")
    assert await redis.hgetall(stamps) == {}
    # A gateway answering after the final event must not bring the socket back.
    await a.touch_auto_response(KEY, "s1", 12.0)
    await a.flush_stamps()
    assert await redis.hgetall(stamps) == {}
    assert (await a.load(KEY)).sockets == {}


async def test_heartbeats_and_re_registration(
    layers: Factory, redis: aioredis.Redis, prefix: str
) -> None:
    a, b = layers("process-a"), layers("process-b")
    assert await a.heartbeat(first=True)
    assert await a.heartbeat()
    assert await b.alive(["process-a", "process-b"]) == {"process-a"}
    await redis.delete(f"{prefix}p:process-a")  # as Redis losing its data
    assert await a.heartbeat() is False  # says so once, and is back
    assert await a.heartbeat() is True
    assert await b.alive(["process-a"]) == {"process-a"}

    # Re-registering puts a socket back, but never over the record the owner keeps.
    await b.acquire(KEY)
    await b.add_socket(KEY, record("s1", holder="process-a", attachment=b"kept", seq=3))
    await a.reregister(KEY, record("s1", holder="process-a", seq=2))
    await a.reregister(KEY, record("s2", holder="process-a", seq=7))
    loaded = await b.load(KEY)
    assert (loaded.sockets["s1"].attachment, loaded.sockets["s1"].seq) == (b"kept", 3)
    assert (loaded.sockets["s2"].attachment, loaded.sockets["s2"].seq) == (None, 7)
    assert await b.holders(KEY) == {"process-a"}


async def test_unreachable_redis_raises_session_layer_unavailable(prefix: str) -> None:
    layer = RedisSessionLayer(
        hosts=[f"redis://127.0.0.1:{free_port()}/0"], prefix=prefix, lease_time=1.0
    )
    layer.holder = "process-a"
    try:
        for call in (
            layer.acquire(KEY),
            layer.owner(KEY),
            layer.load(KEY),
            layer.heartbeat(first=True),
            layer.flush_stamps(),
        ):
            if call.cr_code.co_name == "flush_stamps":
                await layer.touch_auto_response(KEY, "s1", 5.0)  # noted: nothing to fail
            with pytest.raises(SessionLayerUnavailable, match="Redis session layer is unreachable"):
                await call
        # What could not be written is kept for the next try.
        assert layer.pending_stamps == {KEY: {"s1": 5.0}}
        assert issubclass(SessionLayerUnavailable, ConnectionError)
    finally:
        await layer.close()


# Outages and freezes ----------------------------------------------------------------------


@pytest.mark.e2e  # a private redis-server, stopped and frozen
@pytest.mark.parametrize("fault", ["stop", "freeze"])
async def test_an_outage_or_freeze_of_redis_expires_no_lease_and_no_heartbeat(
    fault: str, prefix: str
) -> None:
    """Redis away for longer than a lease (stopped with its data kept, or frozen with
    SIGSTOP): when it is back, the owner still owns its object (another process cannot
    take it), its writes go through, and no heartbeat looks lost or dead; a process
    that stopped ticking before the outage is still found dead afterwards."""
    with private_redis(persistent=True) as server:
        async for make in make_layers(server.url(), prefix):
            a, b = make("process-a", lease_time=0.6), make("process-b", lease_time=0.6)
            dead = make("process-dead", lease_time=0.6)
            assert await dead.heartbeat(first=True)
            assert await a.heartbeat(first=True) and await b.heartbeat(first=True)
            await a.acquire(KEY)
            await outlived(a, b, "process-dead")
            if fault == "stop":
                server.stop()
                await asyncio.sleep(1.5)  # the outage: longer than two leases
                server.start()
                for layer in (a, b):  # each drops its pool's dead connections once
                    with contextlib.suppress(SessionLayerUnavailable):
                        await layer.owner("another-key")
            else:
                server.freeze()
                await asyncio.sleep(1.5)  # the freeze: longer than two leases
                server.thaw()
            assert await b.acquire(KEY) == (False, "process-a", a.fence_token(KEY))
            assert await b.owner(KEY) == "process-a"
            assert await a.heartbeat() is True  # not "Redis lost this process's data"
            assert await b.alive(["process-a", "process-b", "process-dead"]) == {
                "process-a",
                "process-b",
            }
            assert await a.renew([KEY]) == []
            await a.add_socket(KEY, record("s1"))
            assert list((await b.load(KEY)).sockets) == ["s1"]
