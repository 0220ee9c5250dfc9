"""Redis session layers at unit level: the fixtures of ``test_redis_layer`` and
``test_redis_wake`` (loaded as a plugin by ``tests/conftest.py``).

- fixture ``prefix``: a key prefix of the test's own on the shared Redis.
- fixture ``layers``: ``layers(holder, lease_time=5.0)`` makes a layer on the shared
  Redis under ``prefix``, as a process named ``holder`` would; the layers are closed
  and the prefix's keys deleted afterwards.
- :func:`make_layers`: the same on another Redis (a private ``redis-server``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from django_durable.session.redis import RedisSessionLayer
from tests.services import REDIS_URL, delete_redis_prefix, need

Factory = Callable[..., RedisSessionLayer]


@pytest.fixture
def prefix() -> str:
    return f"unit-{uuid.uuid4().hex[:12]}:"


async def make_layers(url: str, prefix: str) -> AsyncIterator[Factory]:
    """A ``layers`` factory on the Redis at ``url``; closes what it made."""
    made: list[RedisSessionLayer] = []

    def make(holder: str, lease_time: float = 5.0, url: str = url) -> RedisSessionLayer:
        layer = RedisSessionLayer(hosts=[url], prefix=prefix, lease_time=lease_time)
        layer.holder = holder
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.close()


@pytest.fixture
async def layers(prefix: str) -> AsyncIterator[Factory]:
    """``layers(holder, lease_time=5.0)``: layers on the shared Redis, under ``prefix``."""
    need("redis")
    async for make in make_layers(REDIS_URL, prefix):
        yield make
    await delete_redis_prefix(prefix)
