"""The sessions of large objects kept between wakes (``redis/session_cache.py``): used
only while Redis says nothing changed them, against the shared Redis under a prefix of
their own (the ``layers`` fixture of ``tests/redis_layers.py``)."""

from __future__ import annotations

from redis import asyncio as aioredis

from django_durable import metrics
from django_durable.redis.session_cache import CACHED_ABOVE_SOCKETS, RECORD_BYTES, SessionCache
from django_durable.session.base import (
    OPEN,
    AddSocket,
    ObjectSession,
    RemoveSocket,
    SocketRecord,
    UpdateSocket,
)
from django_durable.session.redis import RedisSessionLayer
from tests.app.cluster_consumers import Census
from tests.cluster_harness import Client, oid
from tests.redis_layers import Factory
from tests.services import REDIS_URL

KEY = "tests.Thing/large-1"
LARGE = CACHED_ABOVE_SOCKETS + 2


def _record(sid: str, attachment: bytes = b"a") -> SocketRecord:
    return SocketRecord(sid, ("all",), attachment, None, "p", OPEN, 1)


async def _wake(layer: RedisSessionLayer) -> ObjectSession:
    """What a wake does: the lease with the session, then ``load``."""
    assert (await layer.acquire(KEY, load=True))[0]
    return await layer.load(KEY)


async def _stored(layer: RedisSessionLayer, count: int = LARGE) -> ObjectSession:
    """An object of ``count`` sockets, woken, written and hibernated by ``layer``."""
    session = await _wake(layer)
    records = [_record(f"s{i:02d}") for i in range(count)]
    for record in records:
        session.sockets[record.id] = record
    await layer.apply(KEY, [AddSocket(record) for record in records], session)
    await layer.release(KEY, session)
    return session


async def test_a_large_object_wakes_on_the_session_it_hibernated_with(layers: Factory) -> None:
    a = layers("process-a")
    session = await _stored(a)
    assert len(a.session_cache) == 1
    reused = metrics.value("kept_session_wakes")
    again = await _wake(a)
    assert again is session  # nothing read, nothing decoded
    assert metrics.value("kept_session_wakes") == reused + 1
    assert len(a.session_cache) == 0  # (the live object owns it now)
    # Its writes go on from the version it was kept at.
    again.sockets["s00"] = _record("s00", b"changed")
    await a.apply(KEY, [UpdateSocket(again.sockets["s00"])], again)
    await a.release(KEY, again)
    third = await _wake(a)
    assert third is again and third.sockets["s00"].attachment == b"changed"


async def test_another_owners_write_makes_the_kept_session_stale(layers: Factory) -> None:
    a, b = layers("process-a"), layers("process-b")
    kept = await _stored(a)
    woken_by_b = await _wake(b)
    assert woken_by_b is not kept and sorted(woken_by_b.sockets) == sorted(kept.sockets)
    del woken_by_b.sockets["s03"]
    await b.apply(KEY, [RemoveSocket("s03")], woken_by_b)
    await b.release(KEY, woken_by_b)
    woken_by_a = await _wake(a)
    assert woken_by_a is not kept
    assert "s03" not in woken_by_a.sockets and len(woken_by_a.sockets) == LARGE - 1


async def test_a_kept_session_is_not_used_after_redis_lost_its_data(
    layers: Factory, prefix: str
) -> None:
    a = layers("process-a")
    kept = await _stored(a)
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        # FLUSHALL, for this test's keys: then a gateway puts its socket back.
        await redis.delete(*[key async for key in redis.scan_iter(f"{prefix}*")])
        await a.reregister(KEY, _record("s-back"))
    finally:
        await redis.aclose()
    woken = await _wake(a)
    assert woken is not kept and list(woken.sockets) == ["s-back"]


async def test_a_socket_put_back_drops_the_version_even_when_the_settings_survived(
    layers: Factory,
) -> None:
    a, b = layers("process-a"), layers("process-b")
    kept = await _stored(a)
    # Part of the data lost (the settings hash, with its version, survived), and a
    # gateway of another process puts its socket back.
    await b.reregister(KEY, _record("s-back"))
    woken = await _wake(a)
    assert woken is not kept and "s-back" in woken.sockets and len(woken.sockets) == LARGE + 1


async def test_timestamps_noted_while_hibernated_reach_the_kept_session(layers: Factory) -> None:
    a, gateway = layers("process-a"), layers("process-b")
    kept = await _stored(a)
    await gateway.touch_auto_response(KEY, "s05", 1234.5)
    await gateway.flush_stamps()
    woken = await _wake(a)
    assert woken is kept and woken.sockets["s05"].auto_response_at == 1234.5


async def test_a_small_object_is_neither_versioned_nor_kept(layers: Factory) -> None:
    a = layers("process-a")
    small = await _stored(a, count=CACHED_ABOVE_SOCKETS)
    assert len(a.session_cache) == 0
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await redis.hget(a.key_names.settings(KEY), "v") is None
    finally:
        await redis.aclose()
    woken = await _wake(a)
    assert woken is not small and sorted(woken.sockets) == sorted(small.sockets)


async def test_a_large_object_that_shrank_drops_its_version(layers: Factory) -> None:
    a = layers("process-a")
    session = await _wake(a)
    records = [_record(f"s{i:02d}") for i in range(LARGE)]
    session.sockets.update((r.id, r) for r in records)
    await a.apply(KEY, [AddSocket(r) for r in records], session)
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await redis.hget(a.key_names.settings(KEY), "v") is not None
        gone = list(session.sockets)[:3]
        for sid in gone:
            del session.sockets[sid]
        await a.apply(KEY, [RemoveSocket(sid) for sid in gone], session)
        assert await redis.hget(a.key_names.settings(KEY), "v") is None
        # (the hash held nothing else: it is gone, no key left behind)
        assert not await redis.exists(a.key_names.settings(KEY))
    finally:
        await redis.aclose()
    await a.release(KEY, session)
    assert len(a.session_cache) == 0


def test_the_cache_is_bounded_in_bytes_oldest_out() -> None:
    unit = RECORD_BYTES + 100  # a record with an attachment of 100 bytes
    cache = SessionCache(max_bytes=25 * unit)

    def session(key: str, size: int, attachment: bytes = b"x" * 100) -> ObjectSession:
        made = ObjectSession(key)
        made.sockets.update((f"{key}-{i}", _record(f"{key}-{i}", attachment)) for i in range(size))
        return made

    cache.keep("a", "v1", session("a", 10))
    cache.keep("b", "v2", session("b", 10))
    cache.keep("c", "v3", session("c", 10))  # 30 records > 25: "a" goes
    assert (cache.version("a"), cache.version("b"), cache.version("c")) == ("", "v2", "v3")
    cache.keep("d", "v4", session("d", 26))  # larger than the whole cache: not kept
    assert cache.version("d") == "" and len(cache) == 2
    # Large attachments count: 10 records of 16 KiB do not fit where 25 small ones do.
    cache.keep("big", "v6", session("big", 10, b"y" * 16_384))
    assert cache.version("big") == "" and len(cache) == 2
    assert cache.take("b", "other") is None and cache.version("b") == ""  # stale: gone
    assert cache.take("c", "v3") is not None and len(cache) == 0
    cache.keep("e", "v5", session("e", 25))  # the room the others left
    assert cache.version("e") == "v5"


# End to end: two daphne processes on Redis -----------------------------------------------


async def test_a_large_object_wakes_on_its_kept_session_only_while_nothing_changed_it(
    cluster,
) -> None:
    c = cluster(2, idle_timeout="0.5")
    room = oid()
    clients = [await c.census(c.servers[i % 2], room) for i in range(LARGE)]
    monitors = [await c.monitor(server) for server in c.servers]
    expected = {}
    for i, client in enumerate(clients):
        ident = (await client.ask({"op": "whoami"}, "id"))["id"]
        await client.ask({"op": "attach", "value": i}, "attached")
        expected[ident] = i
    on_first = clients[0]  # held by the first process
    on_second = clients[1]

    async def kept_wakes(server: int) -> int:
        reply = await monitors[server].ask({"op": "metrics"}, "metrics")
        return int(reply["metrics"]["kept_session_wakes"])

    async def listed_from(client: Client) -> dict[str, int]:
        """Wake the object from ``client``'s process (hibernated by idleness first)."""
        await c.wait_unowned(Census, room)
        listed = (await client.ask({"op": "sockets"}, "sockets"))["sockets"]
        return {sid: attachment["note"] for sid, _, attachment in listed}

    # The first process wakes it, hibernates it, and wakes it again on what it kept.
    assert await listed_from(on_first) == expected
    before = await kept_wakes(0)
    assert await listed_from(on_first) == expected
    assert await kept_wakes(0) == before + 1
    # The second process wakes it and changes an attachment: the first one's kept
    # session is stale, and its next wake reads Redis.
    assert await listed_from(on_second) == expected
    await on_second.ask({"op": "attach", "value": "changed"}, "attached")
    expected[(await on_second.ask({"op": "whoami"}, "id"))["id"]] = "changed"
    assert await listed_from(on_first) == expected
    assert await kept_wakes(0) == before + 1
