"""Joining several tag groups of ``channels_redis`` in one round trip.

A socket's connect joins its object's groups (every socket of the object, and one per
tag) that this process does not hold yet: for a new object, every one of them.
``RedisChannelLayer.group_add`` spends two round trips on each (``ZADD``, then
``EXPIRE``): with ``HIBERNATE_EAGERLY`` and one socket per object, four of the
connect's round trips. :func:`group_add_many` sends the same commands, with the same
keys, scores and expiry, for all of them in one pipeline per Redis host.

Connects running at the same time share their pipelines: the joins asked for while
one pipeline is on its way go together in the next (a group commit), so 50 handshakes
in flight cost a few pipelines, not 50. Each caller still returns only once its own
groups are joined, and gets the error of the pipeline that carried them.

Only the exact ``channels_redis.core.RedisChannelLayer`` is joined this way (it is
what the commands are copied from); any other layer, a subclass included, gets its
own ``group_add`` per group.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

try:  # channels_redis is optional (the in-memory layers need none)
    from channels_redis.core import RedisChannelLayer
except ImportError:  # pragma: no cover - without channels_redis
    RedisChannelLayer = None


def _pipelined(layer: Any) -> bool:
    return RedisChannelLayer is not None and type(layer) is RedisChannelLayer


class _Joins:
    """The joins of one channel layer, on one event loop, waiting for the next pipeline."""

    __slots__ = ("task", "waiting")

    def __init__(self) -> None:
        self.waiting: list[tuple[list[str], str, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None


#: Channel layer -> event loop -> its joins waiting (each gone with its layer or loop:
#: a layer outlives the loops of tests, and a future belongs to one loop).
_joins: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, _Joins]] = (
    weakref.WeakKeyDictionary()
)


async def group_add_many(layer: Any, names: list[str], channel: str) -> None:
    """``layer.group_add(name, channel)`` for each of ``names``, in one round trip per
    host when ``layer`` is channels_redis's, shared with the joins asked for meanwhile
    (see the module docstring)."""
    if not names:
        return
    if not _pipelined(layer):
        for name in names:
            await layer.group_add(name, channel)
        return
    # The checks of RedisChannelLayer.group_add (channels_redis 4.x), in the caller.
    assert layer.require_valid_channel_name(channel), "Channel name not valid"
    for name in names:
        assert layer.require_valid_group_name(name), "Group name not valid"
    loop = asyncio.get_running_loop()
    by_loop = _joins.get(layer)
    if by_loop is None:
        by_loop = _joins[layer] = weakref.WeakKeyDictionary()
    joins = by_loop.get(loop)
    if joins is None:
        joins = by_loop[loop] = _Joins()
    future: asyncio.Future[None] = loop.create_future()
    joins.waiting.append((names, channel, future))
    if joins.task is None:
        joins.task = loop.create_task(_send_waiting(layer, joins), name="durable-group-joins")
    await future


async def _send_waiting(layer: Any, joins: _Joins) -> None:
    """Send what waits, one pipeline per host, until nothing does."""
    try:
        while joins.waiting:
            batch, joins.waiting = joins.waiting, []
            try:
                await _send(
                    layer, [(name, channel) for names, channel, _ in batch for name in names]
                )
            except asyncio.CancelledError:
                for _, _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)
    finally:
        joins.task = None
        for _, _, future in joins.waiting:  # (only when cancelled: nobody would send them)
            future.cancel()
        joins.waiting = []


async def _send(layer: Any, joins: list[tuple[str, str]]) -> None:
    # The commands of RedisChannelLayer.group_add (channels_redis 4.x).
    by_host: dict[int, list[tuple[str, str]]] = {}
    for name, channel in joins:
        by_host.setdefault(layer.consistent_hash(name), []).append((name, channel))
    now = time.time()
    for index, group in by_host.items():
        async with layer.connection(index).pipeline(transaction=False) as pipe:
            for name, channel in group:
                key = layer._group_key(name)
                pipe.zadd(key, {channel: now})
                pipe.expire(key, layer.group_expiry)
            await pipe.execute()
