"""The transport for many processes: forwarding, acknowledgements, failover.

Every process has a name of its own, its *process channel* (a channel-layer channel,
also its name as a socket holder and as a lease holder), and an inbox, a Redis list
other processes put messages for it in (:mod:`~django_durable.redis.inbox`, filled by
their couriers, :mod:`~django_durable.redis.couriers`), read by one task. Tag groups
reach the process channel itself, through the channel layer, read by another task.
Through the inbox:

- gateways forward their sockets' events to the process that owns the object
  (``durable.event``), and get the connect verdict back (``durable.verdict``):
  :mod:`~django_durable.redis.forwarding`;
- owners send to other processes' sockets (``durable.send``, one message per process
  however many sockets), close them (``durable.close``, ``durable.kill``), and
  acknowledge handled events (``durable.ack``): :mod:`~django_durable.redis.to_sockets`;
- stubs call methods of an object owned elsewhere (``durable.call``/``durable.result``):
  :mod:`~django_durable.redis.remote_calls`;
- the maintenance renews leases and handles failover and data loss:
  :mod:`~django_durable.redis.maintenance`.

Every message's shape is in :mod:`~django_durable.redis.messages`; the outbox that makes
delivery exactly once at the object is :mod:`~django_durable.redis.outbox`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..events import REJOIN, Event
from ..session.base import SocketRecord
from ..shards import new_deliverable_channel
from .forwarding import CONNECT_TIMEOUT, Forwarding
from .inbox import Inbox
from .maintenance import Maintenance
from .owners import Owners
from .parts import MAX_HOPS, RemoteSocket
from .records import unpack_record
from .remote_calls import CALL_TIMEOUT, RemoteCalls
from .stamps import flush_stamps_forever, on_stamps_message
from .to_sockets import ABNORMAL, ToSockets

__all__ = [
    "ABNORMAL",
    "CALL_TIMEOUT",
    "CONNECT_TIMEOUT",
    "MAX_HOPS",
    "RedisTransport",
    "RemoteSocket",
]

logger = logging.getLogger(__name__)


class RedisTransport(Forwarding, Owners, ToSockets, RemoteCalls, Maintenance):
    """Implements :class:`~django_durable.ports.Transport` across processes, on Redis."""

    # Start-up --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open this process's channel, heartbeat, and start its reader and maintenance."""
        if self.channel:
            return
        async with self._start_lock:
            if self.channel:
                return
            channel = await new_deliverable_channel(self.channel_layer, "durable")
            self.layer.holder = channel
            self.runtime.process_id = channel
            await self.layer.heartbeat(first=True)
            self.channel = channel
            loop = asyncio.get_running_loop()
            inbox = Inbox(self.layer, channel)
            self._tasks = [
                loop.create_task(inbox.read_forever(self._dispatch), name="durable-inbox"),
                loop.create_task(self._read(), name="durable-process-channel"),
                loop.create_task(self._maintain(), name="durable-maintenance"),
                loop.create_task(flush_stamps_forever(self), name="durable-stamps"),
            ]
            logger.info("process channel %s started", channel)

    async def group_channel(self) -> str | None:
        # One channel and one reader per process, for tag groups too.
        """This process's channel: tag groups are joined with it and read by its reader."""
        await self.start()
        return self.channel

    # The process channel -----------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Any], Awaitable[None]]]:
        return {
            "durable.event": self._on_event,
            "durable.verdict": self._on_verdict,
            "durable.ack": self._on_ack,
            "durable.send": self._on_send,
            "durable.close": self._on_close,
            "durable.kill": self._on_kill,
            "durable.call": self._on_call,
            "durable.result": self._on_result,
            "durable.rejoin": self._on_rejoin,
            "durable.stamps": self._on_stamps,
            "durable.records": self._on_records,
            "durable.released": self._on_released,
            # Tag groups' messages (this channel is joined to them: see fanout.py).
            "durable.broadcast": self.runtime.fanout.handle,
            "durable.settings": self.runtime.fanout.handle,
        }

    async def _dispatch(self, message: Any) -> None:
        """Hand one message (from the inbox or the process channel) to its handler."""
        handler = self._by_type.get(message.get("type", ""))
        if handler is None:
            logger.warning("unknown message for this process: %r", message.get("type"))
            return
        try:
            await handler(message)
        except Exception:
            logger.exception("handling %s failed", message.get("type"))

    @functools.cached_property
    def _by_type(self) -> dict[str, Callable[[Any], Awaitable[None]]]:
        return self._handlers()

    async def _read(self) -> None:
        """The process channel: tag groups' messages (and anything sent to it)."""
        while True:
            try:
                message = await self.channel_layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("process channel receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message.get("type") == "durable.call":
                message["via_channel_layer"] = True
            await self._dispatch(message)

    async def _on_records(self, message: dict[str, Any]) -> None:
        self.copies.received(message)

    async def _on_stamps(self, message: dict[str, Any]) -> None:
        await on_stamps_message(self, message)

    async def _on_rejoin(self, message: dict[str, Any]) -> None:
        self._rejoin(message["key"], [unpack_record(sid, data) for sid, data in message["records"]])

    def _rejoin(self, key: str, records: list[SocketRecord]) -> None:
        """Tell the live object about sockets put back after it loaded (if it is here)."""
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            live.queue.put_nowait(Event(REJOIN, None, records))
        else:
            self.layer.forget_preloaded(key)  # read before these were put back
