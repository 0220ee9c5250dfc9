"""Gateways -> owners: a socket's events, numbered, forwarded to the object's owner.

A part of :class:`~django_durable.redis.transport.RedisTransport`. The gateway's
process finds the owner (taking the object when it has none), sends ``durable.event``
to its process channel and keeps the event in the socket's outbox
(:mod:`~django_durable.redis.outbox`) until the owner acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from channels.exceptions import ChannelFull

from .. import metrics
from ..asgi_server import TRY_AGAIN_LATER
from ..delivery import is_connection_error, send_waiting
from ..events import CLOSE, CONNECT, CloseData, ConnectData, Event
from ..exceptions import SessionLayerUnavailable
from ..registry import registry
from ..scopes import export_scope, import_scope
from .held import STALL_AFTER, close_try_again_later
from .messages import AckMessage, EventMessage, ReleasedMessage, VerdictMessage
from .outbox import OutboxEntry, hand_on, trim
from .parts import MAX_HOPS, RemoteSocket, TransportParts

if TYPE_CHECKING:
    from ..classes import DurableClass
    from ..ports import Ack
    from ..sockets import LocalSocket

logger = logging.getLogger(__name__)

#: How long a gateway waits for the verdict of ``connect()`` before rejecting.
CONNECT_TIMEOUT = 30.0


class Forwarding(TransportParts):
    """Events from this process's gateways to their objects' owners."""

    async def connect(self, sock: LocalSocket, scope: dict[str, Any]) -> tuple[str, ...] | None:
        """Forward the connect to the owner and wait (bounded) for its verdict."""
        self.layer.hold(sock.key)  # until gone(sock)
        self.serving = True
        await self.start()
        if sock.key not in self.layer.auto_cache:
            await self._retrying(self.layer.load_auto_response, sock.key)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._connects[sock.id] = future
        event = Event(CONNECT, sock.id, ConnectData(sock, export_scope(scope)), future, seq=0)
        try:
            await self.route(sock, event)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    tags = await future
            except TimeoutError:
                logger.error("socket %s: no connect verdict from %s", sock.id, sock.key)
                return None
        finally:
            self._connects.pop(sock.id, None)
        self._trim(sock, 0)
        if tags is not None:
            sock.tags = tuple(tags)
            if sock.key not in self.layer.auto_cache:
                # A rejected socket of the object let go of it meanwhile (fanout.leave).
                await self._retrying(self.layer.load_auto_response, sock.key)
        return None if tags is None else tuple(tags)

    async def route(self, sock: LocalSocket, event: Event) -> None:
        """Hand ``event`` on, or hold it (see :mod:`django_durable.held`): never wait on
        Redis for long, so the gateway keeps reading its socket (and its close)."""
        if sock.outbox is None:
            sock.outbox = deque()
        entry = OutboxEntry(event.seq or 0, event, time.monotonic())
        sock.outbox.append(entry)
        if not self.held.stalled(sock):
            try:
                async with asyncio.timeout(STALL_AFTER):
                    entry.owner = await self._deliver_held(sock, event)
                return
            except (TimeoutError, SessionLayerUnavailable, ChannelFull):
                pass  # Redis is away, frozen or slow: held below
        if self.held.hold(sock, entry) and sock.open:
            logger.warning(
                "socket %s of %s closed with %d: %d bytes of events held in this process "
                "(MAX_HELD_BYTES) while Redis is away",
                sock.id,
                sock.key,
                TRY_AGAIN_LATER,
                self.held.bytes,
            )
            await close_try_again_later(sock)

    async def _deliver_held(self, sock: LocalSocket, event: Event) -> str:
        return await self._deliver(sock.cls, sock.object_id, sock.key, event, self.channel)

    async def _retrying(self, fn: Any, *args: Any) -> Any:
        """Retry while Redis is unreachable or the owner's channel is full: the
        socket's frames wait (and TCP pushes back on the client); none is lost."""
        delay = 0.05
        full_pause = 0.002
        while True:
            try:
                return await fn(*args)
            except ChannelFull:
                # The owner is behind: try again soon (a long sleep here would leave
                # its channel empty and cap the socket at a few events a second).
                await asyncio.sleep(full_pause)
                full_pause = min(full_pause * 2, 0.1)
            except SessionLayerUnavailable as exc:
                logger.warning("%s; retrying in %.1f s", exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _deliver(
        self,
        cls: DurableClass,
        object_id: str,
        key: str,
        event: Event,
        holder: str,
        hops: int = 0,
    ) -> str:
        """Put ``event`` in the owner's mailbox (taking the object if it has no owner)."""
        owner = await self._owner_elsewhere(key)
        if owner is not None:
            await self._send_or_unavailable(
                owner, self._event_message(cls, object_id, event, holder, hops)
            )
            metrics.inc("forwarded_events")
            return owner
        self.runtime.dispatcher.put(cls, object_id, key, event)
        return self.channel

    async def _owner_elsewhere(self, key: str) -> str | None:
        """None when the object runs here (live, or taken now); else its owner's channel.

        Waits for a release of the same object in flight first: taking the lease while
        this process's own release is on its way would lose it right after.
        """
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            return None
        while key in self._releasing:
            await self._releasing[key]
        owned, owner, _ = await self.layer.acquire(key)
        return None if owned else owner

    def _event_message(
        self, cls: DurableClass, object_id: str, event: Event, holder: str, hops: int
    ) -> EventMessage:
        data = event.data
        if event.kind == CONNECT:
            data = data.scope
        elif event.kind == CLOSE:
            data = list(data)
        return EventMessage(
            type="durable.event",
            cls=cls.durable_name,
            oid=object_id,
            kind=event.kind,
            sid=event.socket_id,
            seq=event.seq,
            data=data,
            holder=holder,
            hops=hops,
        )

    def gone(self, sock: LocalSocket) -> None:
        """The connection ended: keep its socket until the owner acknowledged its last events."""
        self.layer.unhold(sock.key)
        if sock.outbox:
            self._draining[sock.id] = sock

    async def scope_for(self, sock: Any, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope rebuilt from the exported one (user and session loaded here)."""
        return await import_scope(scope)

    async def _send_retrying(
        self,
        channel: str,
        message: Mapping[str, Any],
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Send, trying again while the connection to Redis is lost: a frame the object
        sent must not be dropped for an outage (the first command on each pooled
        connection after Redis restarted fails too). The handler waits meanwhile, as
        the object would for its session writes. A full channel is waited for by
        ``send_waiting`` (bounded: ``DeliveryFailed``; ``HolderGone`` for a dead one)."""
        delay = 0.05
        warned = False
        while True:
            try:
                await send_waiting(self.channel_layer, channel, message, gone=gone)
                return
            except SessionLayerUnavailable as exc:
                if not warned and delay >= 0.4:
                    logger.warning("sending to %s: Redis unreachable (%s); retrying", channel, exc)
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _send_or_unavailable(self, channel: str, message: Mapping[str, Any]) -> None:
        try:
            await self.channel_layer.send(channel, message)
        except Exception as exc:
            if is_connection_error(exc):
                raise SessionLayerUnavailable(f"the channel layer is unreachable: {exc}") from exc
            raise

    async def _on_event(self, message: EventMessage) -> None:
        if self.runtime.shutting_down:
            # Handing objects over: the event stays in its sender's outbox, which sends
            # it again to the next owner (told at once, see ``released``).
            return
        cls = registry.get(message["cls"])
        if cls is None:
            logger.error("event for unknown durable class %r dropped", message["cls"])
            return
        kind, sid, data = message["kind"], message["sid"], message["data"]
        if kind == CONNECT:
            data = ConnectData(RemoteSocket(sid or "", message["holder"]), data)
        elif kind == CLOSE:
            data = CloseData(*data)
        event = Event(kind, sid, data, seq=message["seq"])
        event.holder = message["holder"]
        if message["hops"] >= MAX_HOPS:
            logger.warning("event for %s dropped after %d hops", message["oid"], MAX_HOPS)
            return
        await self._deliver(
            cls,
            message["oid"],
            cls.object_key(message["oid"]),
            event,
            message["holder"],
            message["hops"] + 1,
        )

    async def _on_verdict(self, message: VerdictMessage) -> None:
        sid, tags = message["sid"], message["tags"]
        sock = self.runtime.sockets.get(sid)
        if tags is not None and sock is not None:
            sock.subprotocol = message.get("subprotocol")
            await sock.accept()
        future = self._connects.get(sid)
        if future is not None and not future.done():
            future.set_result(tags)

    async def ack(self, acks: list[Ack]) -> None:
        """Trim this process's outboxes; one ``durable.ack`` per other holding process."""
        remote: dict[str, list[list[Any]]] = defaultdict(list)
        for holder, sid, seq in acks:
            if holder == self.channel:
                self._trim_id(sid, seq)
            else:
                remote[holder].append([sid, seq])
        for holder, pairs in remote.items():
            with contextlib.suppress(Exception):
                ack = AckMessage(type="durable.ack", acks=pairs)
                await self.channel_layer.send(holder, ack)

    def _trim_id(self, sid: str, seq: int) -> None:
        sock = self.runtime.sockets.get(sid) or self._draining.get(sid)
        if sock is not None:
            sock.acked(seq)
            self._trim(sock, seq)

    def _trim(self, sock: Any, seq: int) -> None:
        if trim(sock, seq):
            self._draining.pop(sock.id, None)

    async def _on_ack(self, message: AckMessage) -> None:
        for sid, seq in message["acks"]:
            self._trim_id(sid, seq)

    async def _on_released(self, message: ReleasedMessage) -> None:
        key = message["key"]
        for sock in [*self.runtime.sockets.values(), *self._draining.values()]:
            if sock.key != key or not sock.outbox or self.held.stalled(sock):
                continue  # (held events are the held events' task's to deliver)
            await hand_on(sock, sock.outbox, self._deliver_held)
