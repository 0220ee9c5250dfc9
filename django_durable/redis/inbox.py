"""A process's inbox: the Redis list other processes put their messages for it in.

Messages between two processes (``durable.event``, ``durable.send``, ``durable.ack``,
...: :mod:`~django_durable.redis.messages`) used to go through the channel layer, where
channels_redis spends four commands on a send (``ZREMRANGEBYSCORE``, ``ZCOUNT``, ``ZADD``,
``EXPIRE``, each a round trip) and four on a receive (``EVAL``, ``BZPOPMIN``, ``ZADD``
to a backup and ``ZPOPMIN`` from it). A forwarded event and its acknowledgement cost
16 of them. Here a message is one element of a list per process, ``q:<process>``
(:meth:`~django_durable.redis.keys.RedisKeys.inbox`), on the host its process channel
hashes to: the senders push with one script per batch
(:mod:`~django_durable.redis.couriers`), and one reader per process takes up to
:data:`BATCH` at a time with ``BLMPOP`` (``BLPOP`` on Redis before 7), one command per
wake-up however many wait.

Tag groups (``durable.broadcast``, ``durable.settings``) still come through the channel
layer's groups, which fan a message out to every process that joined: the process
reads both, and hands both to the same handlers.

A list, like a channel, is lost with Redis's data, and a message in it with a process
that died: the gateways' outboxes send events again (see
:mod:`~django_durable.redis.outbox`), and the owners of the dead process's sockets
close them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import msgpack
from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from .layer import RedisSessionLayer

logger = logging.getLogger(__name__)

#: Messages taken from the list at once.
BATCH = 256
#: Seconds one blocking pop waits at most (it returns as soon as a message arrives).
BLOCK = 1.0


def pack(message: Any) -> bytes:
    """A message as the list holds it (msgpack, as channels_redis sends it)."""
    return bytes(msgpack.packb(message, use_bin_type=True))


def unpack(data: bytes) -> Any:
    """A message from the list."""
    return msgpack.unpackb(data, raw=False)


def block_seconds(redis: Any) -> float:
    """How long a pop may block: less than the connections' socket timeout (redis-py
    8 gives 5 s unless ``CONFIG["hosts"]`` says otherwise), or the pop would fail."""
    pool = getattr(redis, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    timeout = kwargs.get("socket_timeout", 5.0)
    if timeout is None:
        return BLOCK
    return max(0.01, min(BLOCK, float(timeout) / 2))


class Inbox:
    """Reads one process's list and hands each message on, in the order they came."""

    def __init__(self, layer: RedisSessionLayer, holder: str) -> None:
        self.redis = layer.redis_for(holder)
        self.key = layer.key_names.inbox(holder)
        self.block = block_seconds(self.redis)
        self._multi = True  # BLMPOP (Redis 7); BLPOP before

    async def take(self) -> list[bytes]:
        """The messages waiting (at most :data:`BATCH`), or [] after ``block`` seconds."""
        if self._multi:
            try:
                got = await self.redis.blmpop(
                    self.block, 1, self.key, direction="LEFT", count=BATCH
                )
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                logger.info("Redis has no BLMPOP (before 7.0): reading with BLPOP")
                self._multi = False
                return []
            return [] if not got else list(cast("list[bytes]", got[1]))
        popped: Any = await self.redis.blpop([self.key], timeout=self.block)
        return [] if not popped else [popped[1]]

    async def read_forever(self, handle: Callable[[Any], Awaitable[None]]) -> None:
        """Hand every message to ``handle``, one after the other, until cancelled."""
        while True:
            try:
                messages = await self.take()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reading this process's inbox failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for data in messages:
                try:
                    message = unpack(data)
                except Exception:
                    logger.error("undecodable message in %s dropped (%d B)", self.key, len(data))
                    continue
                if not isinstance(message, dict):
                    logger.error("message in %s is not a dict: dropped", self.key)
                    continue
                await handle(message)
