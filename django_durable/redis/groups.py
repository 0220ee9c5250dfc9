"""Joining several tag groups of ``channels_redis`` in one round trip.

A socket's connect joins its object's groups (every socket of the object, and one per
tag) that this process does not hold yet: for a new object, every one of them.
``RedisChannelLayer.group_add`` spends two round trips on each (``ZADD``, then
``EXPIRE``): with ``HIBERNATE_EAGERLY`` and one socket per object, four of the
connect's round trips. :func:`group_add_many` sends the same commands, with the same
keys, scores and expiry, for all of them in one pipeline per Redis host.

Only the exact ``channels_redis.core.RedisChannelLayer`` is joined this way (it is
what the commands are copied from); any other layer, a subclass included, gets its
own ``group_add`` per group.
"""

from __future__ import annotations

import time
from typing import Any

try:  # channels_redis is optional (the in-memory layers need none)
    from channels_redis.core import RedisChannelLayer
except ImportError:  # pragma: no cover - without channels_redis
    RedisChannelLayer = None


def _pipelined(layer: Any) -> bool:
    return RedisChannelLayer is not None and type(layer) is RedisChannelLayer


async def group_add_many(layer: Any, names: list[str], channel: str) -> None:
    """``layer.group_add(name, channel)`` for each of ``names``, in one round trip per
    host when ``layer`` is channels_redis's (see the module docstring)."""
    if not names:
        return
    if not _pipelined(layer):
        for name in names:
            await layer.group_add(name, channel)
        return
    # The checks and commands of RedisChannelLayer.group_add (channels_redis 4.x).
    assert layer.require_valid_channel_name(channel), "Channel name not valid"
    by_host: dict[int, list[str]] = {}
    for name in names:
        assert layer.require_valid_group_name(name), "Group name not valid"
        by_host.setdefault(layer.consistent_hash(name), []).append(name)
    now = time.time()
    for index, group in by_host.items():
        async with layer.connection(index).pipeline(transaction=False) as pipe:
            for name in group:
                key = layer._group_key(name)
                pipe.zadd(key, {channel: now})
                pipe.expire(key, layer.group_expiry)
            await pipe.execute()
