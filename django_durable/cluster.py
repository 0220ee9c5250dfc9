"""The transport for many processes: forwarding, acknowledgements, failover.

Every process has one channel-layer channel of its own (its *process channel*, also
its name as a socket holder and as a lease holder) read by one task. Through it:

- gateways forward their sockets' events to the process that owns the object
  (``durable.event``), and get the connect verdict back (``durable.verdict``);
- owners send to other processes' sockets (``durable.send``, one message per process
  however many sockets), close them (``durable.close``, ``durable.kill``), and
  acknowledge handled events (``durable.ack``);
- stubs call methods of an object owned elsewhere (``durable.call``/``durable.result``).

Delivery is at least once on the wire and exactly once at the object: each gateway
numbers its socket's events and keeps them in an *outbox* until the owner has handled
them and stored the fact (the socket record's ``seq``); the owner admits each number
once and in order. A maintenance task per process renews leases and its heartbeat,
re-sends events whose owner died (once its lease expired, another process takes the
object), closes sockets of processes whose heartbeat expired (``1006``), and
re-registers this process's sockets if Redis lost its data.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from . import exceptions, metrics
from .asgi_server import TRY_AGAIN_LATER
from .calls import ALARM_METHOD, check_rpc, run_rpc
from .copies import RecordCopies
from .delivery import HolderGone, is_connection_error, send_waiting
from .encoding import decode
from .events import CALL, CLOSE, CONNECT, HIBERNATE, REJOIN, Event
from .exceptions import OwnershipLost, RPCError, SessionLayerUnavailable
from .fanout import broadcast_event_message
from .framing import POSITION
from .held import STALL_AFTER, HeldEvents, close_try_again_later
from .redis.records import pack_pair, pack_record, unpack_record
from .registry import registry
from .scopes import export_scope, import_scope
from .session.base import OPEN, SocketRecord
from .shards import new_deliverable_channel
from .stamps import flush_stamps_forever, on_stamps_message
from .transport import LocalTransport

if TYPE_CHECKING:
    from .classes import DurableClass
    from .ports import Ack, Host, LiveObjectPort
    from .redis.layer import RedisSessionLayer
    from .sockets import LocalSocket

logger = logging.getLogger(__name__)

#: How long a gateway waits for the verdict of ``connect()`` before rejecting.
CONNECT_TIMEOUT = 30.0
#: How long a stub waits for an object in another process to answer.
CALL_TIMEOUT = 60.0
#: Forwarding hops before a message is dropped (the gateway's outbox re-sends it).
MAX_HOPS = 3
ABNORMAL = "the process holding this socket stopped"


class RemoteSocket:
    """A socket held by another process's gateway, as its owner knows it."""

    __slots__ = ("holder", "id", "subprotocol")

    def __init__(self, socket_id: str, holder: str) -> None:
        self.id = socket_id
        self.holder = holder
        self.subprotocol: str | None = None


class RedisTransport(LocalTransport):
    def __init__(self, runtime: Host) -> None:
        super().__init__(runtime)
        self.layer: RedisSessionLayer = runtime.layer  # type: ignore[assignment]
        self.channel_layer = get_channel_layer()
        if self.channel_layer is None:
            raise ImproperlyConfigured(
                "RedisSessionLayer needs a channel layer: set CHANNEL_LAYERS to "
                "channels_redis.core.RedisChannelLayer on the same Redis"
            )
        self.channel = ""
        #: True once a gateway of this process took a connection: only serving
        #: processes take objects that have sockets elsewhere.
        self.serving = False
        self._start_lock = asyncio.Lock()
        self._connects: dict[str, asyncio.Future[Any]] = {}
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self._releasing: dict[str, asyncio.Future[None]] = {}
        #: Sockets whose connection ended but whose last events are not acknowledged.
        self._draining: dict[str, LocalSocket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = time.monotonic()
        #: Set when Redis lost this process's data, until its sockets are back there.
        self._reregistering = False
        #: Holders whose heartbeat this process found missing: [first seen, last seen].
        self._missing: dict[str, list[float]] = {}
        #: Attachments and tags of this process's sockets, to put back if Redis loses them.
        self.copies = RecordCopies(self)
        self.layer.on_written = self.copies.written
        #: Events that gateways could not hand on at once (Redis away or slow).
        self.held = HeldEvents(self._deliver_held)

    # Start-up --------------------------------------------------------------------------

    async def start(self) -> None:
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
            self._tasks = [
                loop.create_task(self._read(), name="durable-process-channel"),
                loop.create_task(self._maintain(), name="durable-maintenance"),
                loop.create_task(flush_stamps_forever(self), name="durable-stamps"),
            ]
            logger.info("process channel %s started", channel)

    async def group_channel(self) -> str | None:
        # One channel and one reader per process, for tag groups too.
        await self.start()
        return self.channel

    # Gateways -> objects ------------------------------------------------------------

    async def connect(self, sock: LocalSocket, scope: dict[str, Any]) -> tuple[str, ...] | None:
        self.layer.hold(sock.key)  # until gone(sock)
        self.serving = True
        await self.start()
        if sock.key not in self.layer.auto_cache:
            await self._retrying(self.layer.load_auto_response, sock.key)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._connects[sock.id] = future
        event = Event(CONNECT, sock.id, (sock, export_scope(scope)), future, seq=0)
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
        entry = [event.seq, event, time.monotonic(), ""]
        sock.outbox.append(entry)
        if not self.held.stalled(sock):
            try:
                async with asyncio.timeout(STALL_AFTER):
                    entry[3] = await self._deliver_held(sock, event)
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
    ) -> dict[str, Any]:
        data = event.data
        if event.kind == CONNECT:
            data = data[1]
        elif event.kind == CLOSE:
            data = list(data)
        return {
            "type": "durable.event",
            "cls": cls.durable_name,
            "oid": object_id,
            "kind": event.kind,
            "sid": event.socket_id,
            "seq": event.seq,
            "data": data,
            "holder": holder,
            "hops": hops,
        }

    def gone(self, sock: LocalSocket) -> None:
        self.layer.unhold(sock.key)
        if sock.outbox:
            self._draining[sock.id] = sock

    async def scope_for(self, sock: Any, scope: dict[str, Any]) -> dict[str, Any]:
        return await import_scope(scope)

    async def call(self, cls: DurableClass, object_id: str, name: str, payload: bytes) -> Any:
        await self.start()
        key = cls.object_key(object_id)
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            return await super().call(cls, object_id, name, payload)
        target = await self._call_target(key)
        if target is None:
            try:
                return await super().call(cls, object_id, name, payload)
            finally:
                if not self.serving:
                    await self.runtime.dispatcher.hibernate(key)
        return await self._remote_call(target, cls, object_id, name, payload)

    async def _call_target(self, key: str) -> str | None:
        """Where a call should run: None for here (this process took the object)."""
        owner = await self.layer.owner(key)
        if owner is None and not self.serving:
            # Leave objects with sockets to the processes that serve them.
            holders = await self.layer.holders(key)
            alive = await self.layer.alive(sorted(holders))
            if alive:
                return sorted(alive)[0]
        if owner is None or owner == self.channel:
            return await self._owner_elsewhere(key)
        return owner

    async def _remote_call(
        self,
        target: str,
        cls: DurableClass,
        object_id: str,
        name: str,
        payload: bytes,
    ) -> Any:
        call_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            await self._send_or_unavailable(
                target,
                {
                    "type": "durable.call",
                    "cls": cls.durable_name,
                    "oid": object_id,
                    "name": name,
                    "payload": payload,
                    "reply_to": self.channel,
                    "call_id": call_id,
                    "hops": 0,
                },
            )
            async with asyncio.timeout(CALL_TIMEOUT):
                reply = await future
        except TimeoutError:
            raise RPCError(
                f"{getattr(cls, '__name__', cls.durable_name)}({object_id!r}).{name}: "
                f"no answer within {CALL_TIMEOUT:.0f} s"
            ) from None
        finally:
            self._calls.pop(call_id, None)
        if reply["ok"]:
            return decode(reply["payload"])
        raise _rebuild_error(*reply["error"])

    async def _send_retrying(
        self,
        channel: str,
        message: dict[str, Any],
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

    async def _send_or_unavailable(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await self.channel_layer.send(channel, message)
        except Exception as exc:
            if is_connection_error(exc):
                raise SessionLayerUnavailable(f"the channel layer is unreachable: {exc}") from exc
            raise

    # Objects -> sockets -----------------------------------------------------------------

    async def send(self, key: str, records: list[SocketRecord], message: dict[str, Any]) -> int:
        local: list[str] = []
        remote: dict[str, list[str]] = defaultdict(list)
        for record in records:
            if record.holder == self.channel or record.id in self.runtime.sockets:
                local.append(record.id)
            else:
                remote[record.holder].append(record.id)
        # Other processes first: their one message each is on its way while this process
        # writes its own frames, rather than waiting behind them.
        sent = 0
        payload = {k: v for k, v in message.items() if k in ("text", "bytes", POSITION)}
        failure: Exception | None = None
        for holder, sids in remote.items():
            try:
                await self._send_retrying(
                    holder,
                    {"type": "durable.send", "sids": sids, **payload},
                    gone=functools.partial(self._holder_gone, holder),
                )
            except HolderGone:
                continue  # its sockets get websocket_close(1006) from the maintenance
            except Exception as exc:
                failure = failure or exc
                continue
            sent += len(sids)
        if local:
            sent += await self.send_local(local, message)
        if failure is not None:
            # The handler must know: a frame it sent did not reach every socket.
            raise failure
        return sent

    async def _holder_gone(self, holder: str) -> bool:
        """Whether ``holder``'s heartbeat has been missing for a whole lease time."""
        try:
            return holder in await self._dead_holders({holder})
        except SessionLayerUnavailable:
            return False

    async def close(self, key: str, record: SocketRecord, code: int, reason: str) -> None:
        if record.id in self.runtime.sockets:
            await super().close(key, record, code, reason)
        else:
            await send_waiting(
                self.channel_layer,
                record.holder,
                {"type": "durable.close", "sid": record.id, "code": code},
            )

    async def kill(self, key: str, record: SocketRecord, error: BaseException) -> None:
        if record.id in self.runtime.sockets:
            await super().kill(key, record, error)
        else:
            await send_waiting(
                self.channel_layer,
                record.holder,
                {"type": "durable.kill", "sid": record.id, "error": str(error)},
            )

    async def verdict(self, key: str, sock: Any, record: SocketRecord | None) -> None:
        if isinstance(sock, RemoteSocket):
            tags = None if record is None else list(record.tags)
            verdict = {"type": "durable.verdict", "sid": sock.id, "tags": tags}
            if sock.subprotocol is not None:
                verdict["subprotocol"] = sock.subprotocol
            await send_waiting(self.channel_layer, sock.holder, verdict)
        elif record is not None:
            await sock.accept()

    # The object's bookkeeping ------------------------------------------------------

    async def on_wake(self, live: LiveObjectPort) -> None:
        for event in await self._dead_socket_closes(live):
            live.front.append(event)

    async def _dead_socket_closes(self, live: LiveObjectPort) -> list[Event]:
        holders = {r.holder for r in live.session.sockets.values() if r.holder != self.channel}
        if not holders:
            return []
        dead = await self._dead_holders(holders)
        return [
            Event(CLOSE, r.id, (1006, ABNORMAL, False))
            for r in list(live.session.sockets.values())
            if r.holder in dead
        ]

    async def _dead_holders(self, holders: set[str]) -> set[str]:
        """The holders whose heartbeat has been missing for a whole lease time.

        One look is not enough: when Redis comes back from an outage (restarted from its
        append-only file) every heartbeat has expired meanwhile, until each process's
        maintenance sets its own again, within a third of a lease. A process that is
        alive renews its heartbeat that often, so one missing for a whole lease is dead
        (or cut off from Redis, and then it has given up its objects too).
        """
        alive = await self.layer.alive(sorted(holders))
        now = time.monotonic()
        dead = set()
        for holder in holders:
            if holder in alive:
                self._missing.pop(holder, None)
                continue
            seen = self._missing.setdefault(holder, [now, now])
            seen[1] = now
            if now - seen[0] >= self.layer.lease_time:
                dead.add(holder)
        return dead

    def _forget_missing(self) -> None:
        """Drop what no longer counts: holders nobody asked about for a while."""
        horizon = time.monotonic() - 2 * self.layer.lease_time
        for holder, (_, last) in list(self._missing.items()):
            if last < horizon:
                del self._missing[holder]

    async def ack(self, acks: list[Ack]) -> None:
        remote: dict[str, list[list[Any]]] = defaultdict(list)
        for holder, sid, seq in acks:
            if holder == self.channel:
                self._trim_id(sid, seq)
            else:
                remote[holder].append([sid, seq])
        for holder, pairs in remote.items():
            with contextlib.suppress(Exception):
                await self.channel_layer.send(holder, {"type": "durable.ack", "acks": pairs})

    def _trim_id(self, sid: str, seq: int) -> None:
        sock = self.runtime.sockets.get(sid) or self._draining.get(sid)
        if sock is not None:
            sock.acked(seq)
            self._trim(sock, seq)

    def _trim(self, sock: Any, seq: int) -> None:
        outbox = sock.outbox
        while outbox and outbox[0][0] <= seq:
            outbox.popleft()
        if not outbox:
            sock.outbox = None
            self._draining.pop(sock.id, None)

    async def released(self, live: LiveObjectPort) -> None:
        key = live.key
        self.copies.forget(live.session.sockets)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._releasing[key] = future
        try:
            if self.runtime.dispatcher.live.get(key) is None:
                await self.layer.release(key, live.session)
                if self.runtime.shutting_down:
                    await self._tell_holders_released(live)
        finally:
            del self._releasing[key]
            future.set_result(None)

    async def _tell_holders_released(self, live: LiveObjectPort) -> None:
        """At shutdown: the processes holding the object's sockets send their events
        not yet acknowledged again now, so that one of them takes the object at once
        rather than after the lease time."""
        holders = {r.holder for r in live.session.sockets.values() if r.holder != self.channel}
        for holder in holders:
            with contextlib.suppress(Exception):
                await self.channel_layer.send(holder, {"type": "durable.released", "key": live.key})

    async def _on_released(self, message: dict[str, Any]) -> None:
        key = message["key"]
        now = time.monotonic()
        for sock in [*self.runtime.sockets.values(), *self._draining.values()]:
            if sock.key != key or not sock.outbox or self.held.stalled(sock):
                continue  # (held events are the held events' task's to deliver)
            for entry in list(sock.outbox):
                entry[2] = now
                entry[3] = await self._deliver(
                    sock.cls, sock.object_id, sock.key, entry[1], self.channel
                )

    async def reroute(self, live: LiveObjectPort, event: Event) -> None:
        if event.kind == CALL:
            event.fail(OwnershipLost(f"{live.key} stopped in this process before the call ran"))
        elif event.kind == HIBERNATE:
            event.resolve(None)
        # Numbered socket events stay in their gateway's outbox, which re-sends them;
        # closes of dead peers' sockets are found again at the next wake.

    async def settings_changed(self, live: LiveObjectPort) -> None:
        pair = live.session.auto_response
        group = live.cls.tag_group(live.object_id, None)
        await self.channel_layer.group_send(
            group,
            {
                "type": "durable.settings",
                "group": group,
                "key": live.key,
                "auto": None if pair is None else pack_pair(pair),
            },
        )

    # The process channel -----------------------------------------------------------------

    async def _read(self) -> None:
        handlers = {
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
        while True:
            try:
                message = await self.channel_layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("process channel receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            handler = handlers.get(message.get("type", ""))
            if handler is None:
                logger.warning("unknown message on the process channel: %r", message.get("type"))
                continue
            try:
                await handler(message)
            except Exception:
                logger.exception("handling %s failed", message.get("type"))

    async def _on_event(self, message: dict[str, Any]) -> None:
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
            data = (RemoteSocket(sid, message["holder"]), data)
        elif kind == CLOSE:
            data = tuple(data)
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

    async def _on_verdict(self, message: dict[str, Any]) -> None:
        sid, tags = message["sid"], message["tags"]
        sock = self.runtime.sockets.get(sid)
        if tags is not None and sock is not None:
            sock.subprotocol = message.get("subprotocol")
            await sock.accept()
        future = self._connects.get(sid)
        if future is not None and not future.done():
            future.set_result(tags)

    async def _on_ack(self, message: dict[str, Any]) -> None:
        for sid, seq in message["acks"]:
            self._trim_id(sid, seq)

    async def _on_send(self, message: dict[str, Any]) -> None:
        out = broadcast_event_message(message)
        if out is not None:
            await self.send_local(message["sids"], out)

    async def _on_close(self, message: dict[str, Any]) -> None:
        sock = self.runtime.sockets.get(message["sid"])
        if sock is not None:
            await sock.close(message["code"])

    async def _on_kill(self, message: dict[str, Any]) -> None:
        sock = self.runtime.sockets.get(message["sid"])
        if sock is not None:
            sock.kill(exceptions.HandlerTimeout(message["error"]))

    async def _on_call(self, message: dict[str, Any]) -> None:
        # Calls may run long: never hold up the process channel for one.
        task = asyncio.get_running_loop().create_task(self._serve_call(message))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _serve_call(self, message: dict[str, Any]) -> None:

        reply: dict[str, Any] = {"type": "durable.result", "call_id": message["call_id"]}
        cls = registry.get(message["cls"])
        try:
            if cls is None:
                raise RPCError(f"unknown durable class {message['cls']!r}")
            object_id, name, payload = message["oid"], message["name"], message["payload"]
            if name != ALARM_METHOD:
                check_rpc(cls, name)  # before waking the object: a refused call runs nothing
            key = cls.object_key(object_id)
            if self.runtime.shutting_down and key not in self.runtime.dispatcher.live:
                raise exceptions.Overloaded(f"{key}: this process is shutting down; try again")
            owner = await self._owner_elsewhere(key)
            if owner is not None:
                if message["hops"] >= MAX_HOPS:
                    raise RPCError(f"{key}: the call found no owner")
                await self.channel_layer.send(owner, {**message, "hops": message["hops"] + 1})
                return
            result = await self.runtime.dispatcher.call(
                cls, object_id, key, lambda instance: run_rpc(instance, name, payload)
            )
            reply.update(ok=True, payload=result)
        except Exception as exc:
            reply.update(ok=False, error=[type(exc).__module__, type(exc).__qualname__, str(exc)])
        await self.channel_layer.send(message["reply_to"], reply)

    async def _on_result(self, message: dict[str, Any]) -> None:
        future = self._calls.get(message["call_id"])
        if future is not None and not future.done():
            future.set_result(message)

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

    # Maintenance ---------------------------------------------------------------------

    async def _maintain(self) -> None:
        interval = self.layer.lease_time / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._maintain_once()
            except SessionLayerUnavailable as exc:
                logger.warning("maintenance: %s", exc)
                # Heartbeats missing before the outage prove nothing after it.
                self._missing.clear()
                if time.monotonic() - self._last_renewal > self.layer.lease_time:
                    # This process cannot tell whether another one took its objects (a
                    # partition) or nobody could (Redis is away): run nothing until a
                    # renewal says which. Redis does not count an outage against a lease.
                    for live in list(self.runtime.dispatcher.live.values()):
                        live.renewed.clear()
            except Exception:
                logger.exception("maintenance failed")

    async def _maintain_once(self) -> None:
        dispatcher = self.runtime.dispatcher
        data_lost = not await self.layer.heartbeat()
        for key in await self.layer.renew(list(self.layer.owned)):
            live = dispatcher.live.get(key)
            if live is not None:
                live.lose()
        self._last_renewal = time.monotonic()
        for live in list(dispatcher.live.values()):
            live.renewed.set()
        if data_lost:
            logger.warning("Redis lost this process's data: re-registering its sockets")
            self._reregistering = True
        if self._reregistering:
            # Until it went through: the heartbeat is back, so it would not say again.
            await self._reregister()
            self._reregistering = False
        await self._resend_stale()
        self._forget_missing()
        self.copies.prune()
        for live in list(dispatcher.live.values()):
            if not live.lost:
                for event in await self._dead_socket_closes(live):
                    live.queue.put_nowait(event)

    async def _resend_stale(self) -> None:
        now = time.monotonic()
        stale_after = self.layer.lease_time / 2
        owners: dict[str, str | None] = {}
        for sock in [*self.runtime.sockets.values(), *self._draining.values()]:
            outbox = sock.outbox
            if not outbox or outbox[0][2] > now - stale_after or self.held.stalled(sock):
                continue  # (held events are the held events' task's to deliver)
            if sock.key not in owners:
                owners[sock.key] = await self.layer.owner(sock.key)
            owner = owners[sock.key]
            if owner is not None and owner == outbox[0][3]:
                continue  # the same owner is alive and holds its lease: it is just busy
            for entry in list(outbox):
                entry[2] = now
                entry[3] = await self._deliver(
                    sock.cls, sock.object_id, sock.key, entry[1], self.channel
                )
            owners.pop(sock.key, None)

    async def _reregister(self) -> None:
        """Put this process's sockets back after Redis lost its data, then their events.

        A process may have taken an object (and loaded it) before every socket was back:
        its instance would not know the missing ones and would drop their events, which
        its lease keeps from ever being sent again (``_resend_stale`` waits for a busy
        owner). So the owner is told about the sockets put back (``durable.rejoin``),
        and every unacknowledged event is sent again after that, in order; the owner
        admits each number once.
        """
        sockets: dict[str, list[tuple[Any, SocketRecord]]] = defaultdict(list)
        for sock in [*self.runtime.sockets.values(), *self._draining.values()]:
            if not sock.accepted:
                continue
            acked = sock.outbox[0][0] - 1 if sock.outbox else sock.seq
            attachment = self.copies.attachment(sock.id)
            record = SocketRecord(sock.id, sock.tags, attachment, None, self.channel, OPEN, acked)
            await self.layer.reregister(sock.key, record)
            sockets[sock.key].append((sock, record))
        for key in sockets:
            live = self.runtime.dispatcher.live.get(key)
            timeout = None if live is None else live.session.event_timeout_ms
            await self.layer.restore_settings(key, self.layer.auto_cache.get(key), timeout)
        await self.runtime.fanout.resubscribe()
        for key, pairs in sockets.items():
            owner = await self.layer.owner(key)
            if owner == self.channel:
                self._rejoin(key, [record for _, record in pairs])
            elif owner is not None:
                records = [[record.id, pack_record(record)] for _, record in pairs]
                await self._send_or_unavailable(
                    owner, {"type": "durable.rejoin", "key": key, "records": records}
                )
            now = time.monotonic()
            for sock, _ in pairs:
                if self.held.stalled(sock):
                    continue  # its held events' task sends them, in order
                for entry in list(sock.outbox or ()):
                    entry[2] = now
                    entry[3] = await self._deliver(
                        sock.cls, sock.object_id, key, entry[1], self.channel
                    )


def _rebuild_error(module: str, qualname: str, message: str) -> BaseException:
    """The caller's copy of an exception raised by a method in another process."""
    if module == "builtins":
        candidate = getattr(builtins, qualname, None)
    elif module == exceptions.__name__:
        candidate = getattr(exceptions, qualname, None)
    else:
        candidate = None
    if isinstance(candidate, type) and issubclass(candidate, Exception):
        with contextlib.suppress(Exception):
            return candidate(message)
    return RPCError(f"{module}.{qualname}: {message}")
