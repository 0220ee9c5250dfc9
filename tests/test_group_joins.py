"""Group joins on channels_redis share pipelines (``django_durable/redis/groups.py``).

On the shared Redis, under a prefix of the test's own: connects running at the same
time join their groups in one pipeline, each caller returns once its groups are in
Redis (with channels_redis's keys, scores and expiry), and a failed pipeline fails
every caller it carried, not later ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from django_durable.redis import groups
from tests.services import REDIS_URL, delete_redis_prefix, need

channels_redis = pytest.importorskip("channels_redis.core")


@pytest.fixture
async def layer() -> AsyncIterator[object]:
    need("redis")
    prefix = f"durable-test-joins-{uuid.uuid4().hex[:8]}"
    channel_layer = channels_redis.RedisChannelLayer(
        hosts=[{"address": REDIS_URL}], prefix=f"{prefix}:asgi"
    )
    try:
        yield channel_layer
    finally:
        await channel_layer.flush()
        await delete_redis_prefix(prefix)


async def members(layer: object, group: str) -> dict[str, float]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        key = layer._group_key(group)  # type: ignore[attr-defined]
        assert await client.ttl(key) > 0  # channels_redis's expiry, set with the join
        return {m.decode(): s for m, s in await client.zrange(key, 0, -1, withscores=True)}
    finally:
        await client.aclose()


async def test_joins_asked_together_go_in_one_pipeline(
    layer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[tuple[str, str]]] = []
    send = groups._send

    async def counted(layer: object, joins: list[tuple[str, str]]) -> None:
        sent.append(joins)
        await send(layer, joins)

    monkeypatch.setattr(groups, "_send", counted)
    channels = [f"specific.test!c{i}" for i in range(20)]
    await asyncio.gather(
        *(groups.group_add_many(layer, [f"g{i}", "all"], ch) for i, ch in enumerate(channels))
    )
    assert len(sent) == 1 and len(sent[0]) == 40
    assert set(await members(layer, "all")) == set(channels)
    for i, channel in enumerate(channels):
        assert list(await members(layer, f"g{i}")) == [channel]

    # Asked while a pipeline is on its way: in the next one, together.
    first = asyncio.ensure_future(groups.group_add_many(layer, ["x0"], "specific.test!d0"))
    await asyncio.sleep(0)  # the first pipeline is being sent
    later = [groups.group_add_many(layer, [f"x{i}"], f"specific.test!d{i}") for i in (1, 2, 3)]
    await asyncio.gather(first, *later)
    assert [len(joins) for joins in sent[1:]] == [1, 3]
    for i in range(4):
        assert list(await members(layer, f"x{i}")) == [f"specific.test!d{i}"]


async def test_a_failed_pipeline_fails_the_joins_it_carried_and_no_other(
    layer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = groups._send
    failures = [ConnectionError("Redis went away")]

    async def failing_once(layer: object, joins: list[tuple[str, str]]) -> None:
        if failures:
            raise failures.pop()
        await send(layer, joins)

    monkeypatch.setattr(groups, "_send", failing_once)
    results = await asyncio.gather(
        groups.group_add_many(layer, ["a"], "specific.test!a"),
        groups.group_add_many(layer, ["b"], "specific.test!b"),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    await groups.group_add_many(layer, ["a"], "specific.test!a")
    assert list(await members(layer, "a")) == ["specific.test!a"]


async def test_a_layer_used_from_another_event_loop_gets_its_own_pipelines(
    layer: object,
) -> None:
    # A channel layer outlives event loops (tests, async_to_sync): each loop sends its own.
    await groups.group_add_many(layer, ["here"], "specific.test!h")

    def in_another_loop() -> None:
        asyncio.run(groups.group_add_many(layer, ["there"], "specific.test!t"))

    await asyncio.get_running_loop().run_in_executor(None, in_another_loop)
    assert list(await members(layer, "there")) == ["specific.test!t"]
