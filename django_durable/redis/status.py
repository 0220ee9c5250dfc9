"""Every object with sockets or a lease in Redis, for the status views.

Read-only and bounded: SCAN in pages, reads pipelined per host, nothing woken. A
corrupt record is left out here; the object's next wake sets it aside and logs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ..session.base import SocketRecord, StoredObject
from .keys import RedisKeys
from .records import CorruptRecord, text, unavailable_as_error, unpack_record

if TYPE_CHECKING:
    from redis import asyncio as aioredis


class RedisLayerLike(Protocol):
    """What a scan needs of the Redis session layer (which calls it)."""

    key_names: RedisKeys
    redises: list[aioredis.Redis]

    def by_host(self, names: list[str]) -> dict[int, list[str]]:
        """``names`` grouped by the index of their host."""


#: Keys per SCAN round trip and per pipeline of reads.
SCAN_COUNT = 500


async def _scan(layer: RedisLayerLike, kind: str) -> list[str]:
    """The object keys that have a ``{prefix}{kind}:K`` Redis key."""
    names = layer.key_names
    keys = []
    for redis in layer.redises:
        async for name in redis.scan_iter(match=names.match(kind), count=SCAN_COUNT):
            keys.append(names.object_key(text(name), kind))
    return keys


async def stored_objects(layer: RedisLayerLike, known: Iterable[str]) -> dict[str, StoredObject]:
    """Every object with sockets or a lease in Redis, and any of ``known``."""
    found: dict[str, StoredObject] = {}
    names = layer.key_names
    async with unavailable_as_error():
        keys = set(await _scan(layer, "s")) | set(await _scan(layer, "l")) | set(known)
        ordered = sorted(keys)
        for start in range(0, len(ordered), SCAN_COUNT):
            for index, chunk in layer.by_host(ordered[start : start + SCAN_COUNT]).items():
                async with layer.redises[index].pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.hgetall(names.sockets(key))
                        pipe.get(names.lease(key))
                    results = await pipe.execute()
                for i, key in enumerate(chunk):
                    sockets: dict[Any, Any] = results[2 * i]
                    lease = results[2 * i + 1]
                    if not sockets and lease is None:
                        continue
                    records: list[SocketRecord] = []
                    for sid, data in sockets.items():
                        with contextlib.suppress(CorruptRecord):
                            records.append(unpack_record(text(sid), data))
                    # A lease is held from wake-up to hibernation: live in its owner.
                    owner = None if lease is None else text(lease).split("|", 1)[0]
                    found[key] = StoredObject(sorted(records, key=lambda r: r.id), owner)
    return found
