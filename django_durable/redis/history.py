"""An object's broadcast history in Redis, for clients that resume (docs/reconnecting.md).

A mixin of :class:`~django_durable.redis.layer.RedisSessionLayer`: ``hm:K`` (epoch and
last offset) and ``h:K`` (the last ``history`` broadcasts), appended to, trimmed and
read by one script each, and forgotten ``HISTORY_TTL`` after their last use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from .. import conf
from ..session.base import HistoryEntry, HistorySnapshot, new_epoch
from .keys import RedisKeys
from .records import text, unavailable_as_error

if TYPE_CHECKING:
    from redis import asyncio as aioredis


class History:
    """Append to and read an object's broadcast history."""

    # Set by the layer.
    key_names: RedisKeys
    _history_append: Any
    _history_read: Any

    if TYPE_CHECKING:

        def redis_for(self, name: str) -> aioredis.Redis: ...

    def _history_keys(self, key: str) -> list[str]:
        return [self.key_names.history_meta(key), self.key_names.history(key)]

    async def append_history(
        self,
        key: str,
        limit: int,
        tag: str | None,
        exclude: tuple[str, ...],
        payload: str | bytes,
    ) -> tuple[str, int]:
        """Keep a broadcast (numbered) in the object's history."""
        entry = msgpack.packb([tag, list(exclude), payload])
        ttl_ms = int(conf.get("HISTORY_TTL") * 1000)
        async with unavailable_as_error():
            epoch, offset = await self._history_append(
                keys=self._history_keys(key),
                args=[limit, ttl_ms, entry, new_epoch()],
                client=self.redis_for(key),
            )
        return text(epoch), int(offset)

    async def read_history(self, key: str, after: int | None) -> HistorySnapshot:
        """The history after ``after``, for a resuming client."""
        ttl_ms = int(conf.get("HISTORY_TTL") * 1000)
        async with unavailable_as_error():
            epoch, head, first, raw = await self._history_read(
                keys=self._history_keys(key),
                args=[-1 if after is None else after, ttl_ms, new_epoch()],
                client=self.redis_for(key),
            )
        head, first = int(head), int(first)
        start = 0 if after is None else max(after + 1, first)
        entries = []
        for i, data in enumerate(raw):
            tag, exclude, payload = msgpack.unpackb(data)
            entries.append(HistoryEntry(start + i, tag, tuple(exclude), payload))
        return HistorySnapshot(text(epoch), head, first, entries)
