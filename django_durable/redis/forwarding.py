"""Gateways -> owners: a socket's events, numbered, forwarded to the object's owner.

A part of :class:`~django_durable.redis.transport.RedisTransport`. The gateway's
process finds the owner (taking the object when it has none; then remembering it,
see :meth:`Forwarding._event_target`), puts ``durable.event`` in its inbox (through
its courier, :mod:`~django_durable.redis.couriers`) and keeps the event in the
socket's outbox (:mod:`~django_durable.redis.outbox`) until the owner acknowledges it,
with the next message it sends this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from channels.exceptions import ChannelFull

from .. import metrics
from ..asgi_server import TRY_AGAIN_LATER
from ..delivery import HolderGone
from ..events import CLOSE, CONNECT, CloseData, ConnectData, Event
from ..exceptions import DeliveryFailed, SessionLayerUnavailable
from ..registry import registry
from ..scopes import export_scope, import_scope
from .held import STALL_AFTER, close_try_again_later, event_size
from .messages import AckMessage, EventMessage, ReleasedMessage, VerdictMessage
from .outbox import OutboxEntry, hand_on, trim
from .parts import MAX_HOPS, RemoteSocket, TransportParts
from .records import CorruptRecord

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
        # The auto-response pair is cached after the verdict (no frame is read before):
        # loaded with the session when the object wakes here, or sent with the verdict.
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
        Redis for long, so the gateway keeps reading its socket (and its close).

        When the owner is known and its courier is flowing, the event is posted and the
        gateway goes on at once (:meth:`_post_at_once`): many events of a socket, and of
        all the process's sockets, are then in flight together, in one push each batch.
        Otherwise the gateway waits (up to ``STALL_AFTER``) for its event to be in the
        owner's inbox, and holds it if it is not.
        """
        if sock.outbox is None:
            sock.outbox = deque()
            self.unacked.setdefault(sock.key, {})[sock.id] = sock
        entry = OutboxEntry(event.seq or 0, event, time.monotonic())
        sock.outbox.append(entry)
        if not self.held.stalled(sock):
            if self._post_at_once(sock, entry):
                if self.held.over() and sock.open:
                    await self._close_held(sock)
                return
            try:
                async with asyncio.timeout(STALL_AFTER):
                    entry.owner = await self._deliver_held(sock, event)
                return
            except (TimeoutError, SessionLayerUnavailable, ChannelFull):
                pass  # Redis is away, frozen or slow: held below
        if self.held.hold(sock, entry) and sock.open:
            await self._close_held(sock)

    async def _close_held(self, sock: LocalSocket) -> None:
        logger.warning(
            "socket %s of %s closed with %d: %d bytes of events kept in this process "
            "(MAX_HELD_BYTES) while Redis is away or slow",
            sock.id,
            sock.key,
            TRY_AGAIN_LATER,
            self.held.bytes + self.held.posted,
        )
        await close_try_again_later(sock)

    def _post_at_once(self, sock: LocalSocket, entry: OutboxEntry) -> bool:
        """Put the event in a live object's mailbox here, or post it to the owner this
        process knows, without waiting, when its courier is flowing; False when neither
        can be done at once. A post that fails later (:meth:`_posted`) is held then."""
        key = sock.key
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            self.runtime.dispatcher.put(sock.cls, sock.object_id, key, entry.event)
            entry.owner = self.channel
            return True
        owner = self.owners.get(key)
        if owner is None or not self.couriers.flowing(owner, STALL_AFTER):
            return False
        message = self._event_message(sock.cls, sock.object_id, entry.event, self.channel, 0)
        future = self.couriers.post(owner, message, watch=True)
        assert future is not None
        size = event_size(entry.event)
        self.held.posted += size
        entry.owner = owner
        future.add_done_callback(functools.partial(self._posted, sock, entry, size))
        metrics.inc("forwarded_events")
        return True

    def _posted(
        self, sock: LocalSocket, entry: OutboxEntry, size: int, future: asyncio.Future[None]
    ) -> None:
        """An event posted without waiting is in the owner's inbox, or failed to get
        there: then the owner is forgotten and the event held (delivered in order with
        the socket's next ones by the held events' task, to the owner found then)."""
        self.held.posted -= size
        if not future.cancelled() and future.exception() is None:
            return
        self.owners.pop(sock.key, None)
        if not entry.owner or not any(e is entry for e in sock.outbox or ()):
            return  # acknowledged meanwhile (sent again by someone else)
        entry.owner = ""
        if self.held.hold(sock, entry) and sock.open:
            self._chore(self._close_held(sock))

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
        """Put ``event`` of a socket held here in the owner's mailbox (taking the object
        if it has no owner); the owner it went to."""
        owner = await self._event_target(key)
        if owner is None:
            self.runtime.dispatcher.put(cls, object_id, key, event)
            return self.channel
        message = self._event_message(cls, object_id, event, holder, hops)
        try:
            await self.couriers.send(owner, message, watch=True)
        except (DeliveryFailed, HolderGone) as exc:
            # The owner is stuck or dead: held, and sent again to the owner found then.
            self.owners.pop(key, None)
            raise ChannelFull(str(exc)) from exc
        except SessionLayerUnavailable:
            self.owners.pop(key, None)
            raise
        metrics.inc("forwarded_events")
        return owner

    async def _event_target(self, key: str) -> str | None:
        """Where this process's gateways send ``key``'s events: None for here (live, or
        taken now), else the owner's process channel.

        The owner found is remembered while a gateway here holds a socket of the object,
        so that a forwarded event costs no lease script. It is forgotten when a send to
        it fails, when the owner tells this process it let the object go (hibernated,
        stopped, or an event came to it that it no longer runs: ``durable.released``),
        when the maintenance finds another owner for an event not acknowledged in time,
        and when Redis lost its data.
        """
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            return None
        owner = self.owners.get(key)
        if owner is not None:
            return owner
        owner = await self._owner_elsewhere(key)
        if owner is not None and key in self.layer.gateways:
            self.owners[key] = owner
        return owner

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
        if sock.key not in self.layer.gateways:
            self.owners.pop(sock.key, None)
        if sock.outbox:
            self._draining[sock.id] = sock

    async def scope_for(self, sock: Any, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope rebuilt from the exported one (user and session loaded here)."""
        return await import_scope(scope)

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
        oid = message["oid"]
        key = cls.object_key(oid)
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            self.runtime.dispatcher.put(cls, oid, key, event)
            return
        # Not live here: finding out more needs Redis, which the reader never waits for.
        self._chore(self._not_live_here(cls, oid, key, event, message["holder"]))

    async def _on_verdict(self, message: VerdictMessage) -> None:
        sid, tags = message["sid"], message["tags"]
        sock = self.runtime.sockets.get(sid)
        if tags is not None and sock is not None:
            sock.subprotocol = message.get("subprotocol")
            auto = message.get("auto")
            if auto is not None and sock.key in self.layer.gateways:
                with contextlib.suppress(CorruptRecord):  # (else read from Redis, below)
                    self.layer.settings_announced(sock.key, auto)
            await sock.accept()
        future = self._connects.get(sid)
        if future is not None and not future.done():
            future.set_result(tags)

    async def ack(self, acks: list[Ack]) -> None:
        """Trim this process's outboxes; tell other holding processes with their next
        message (see :meth:`~django_durable.redis.couriers.Couriers.ack`): not awaited."""
        remote: dict[str, list[list[Any]]] = defaultdict(list)
        for holder, sid, seq in acks:
            if holder == self.channel:
                self._trim_id(sid, seq)
            else:
                remote[holder].append([sid, seq])
        for holder, pairs in remote.items():
            self.couriers.ack(holder, pairs)

    def _trim_id(self, sid: str, seq: int) -> None:
        sock = self.runtime.sockets.get(sid) or self._draining.get(sid)
        if sock is not None:
            sock.acked(seq)
            self._trim(sock, seq)

    def _trim(self, sock: Any, seq: int) -> None:
        if trim(sock, seq):
            self._draining.pop(sock.id, None)
            waiting = self.unacked.get(sock.key)
            if waiting is not None:
                waiting.pop(sock.id, None)
                if not waiting:
                    del self.unacked[sock.key]

    async def _on_ack(self, message: AckMessage) -> None:
        for sid, seq in message["acks"]:
            self._trim_id(sid, seq)

    async def _on_released(self, message: ReleasedMessage) -> None:
        """The owner let the object go (or an event reached a process that does not run
        it): forget it as the owner, and send what it did not acknowledge again."""
        key = message["key"]
        self.owners.pop(key, None)
        sockets = [
            sock  # (in ``unacked``: its outbox has events)
            for sock in self.unacked.get(key, {}).values()
            # (held events are the held events' task's to deliver)
            if not self.held.stalled(sock)
        ]
        if sockets:
            self._chore(self._send_again(sockets))

    async def _send_again(self, sockets: list[LocalSocket]) -> None:
        for sock in sockets:
            if not sock.outbox or self.held.stalled(sock):
                continue
            try:
                await hand_on(sock, sock.outbox, self._deliver_held)
            except (SessionLayerUnavailable, ChannelFull) as exc:
                # Not acknowledged: the maintenance sends them again later.
                logger.warning("events of socket %s not sent again yet: %s", sock.id, exc)
