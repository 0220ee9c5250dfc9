"""Tag groups: one process channel joined to every group this process holds sockets in.

Each tag of each object is a channel-layer group (``DurableConsumer.tag_group``), and so
is "every socket of the object". A process joins a group, with its one *process
channel*, while it holds at least one socket in it; the one reader of that channel
fans each ``durable.broadcast`` out to the local sockets of the group the message
names in ``"group"`` (a message delivered to a channel does not say through which
group it came, so the message must: :func:`django_durable.broadcast_event` builds it).
So a tag broadcast costs one channel-layer message per process rather than one per
socket, and a hibernated object costs no task, no channel and no reader: only its
groups' entries, which its sockets need.

With the Redis transport the process channel is the transport's own (its reader hands
group messages here); otherwise this module makes one and reads it. On Channels'
in-memory layer the groups are not added one by one: the layer is told to answer for
them from ``self.groups`` (:mod:`django_durable.local_groups`), so a hibernated object
costs that layer nothing.

Groups are re-joined every ``GROUP_REFRESH`` seconds because channels-redis forgets a
membership ``group_expiry`` (24 h) after it was added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer

from . import metrics
from .framing import NUMBER, POSITION
from .local_groups import serve
from .redis.groups import group_add_many
from .shards import new_deliverable_channel

if TYPE_CHECKING:
    from .ports import Host
    from .sockets import LocalSocket

logger = logging.getLogger(__name__)

GROUP_REFRESH = 3600.0
#: Seconds a group with no local socket left is kept before this process leaves it.
GROUP_LINGER = 30.0

#: A group's local sockets: one socket id, or a set of them (most groups hold one
#: socket: a set for each would cost a hibernated object 200 bytes per group); ``""``
#: while the group lingers with none.
Members = str | set[str]


def _group_names(sock: LocalSocket, tags: tuple[str, ...]) -> list[str]:
    cls, object_id = sock.cls, sock.object_id
    return [cls.tag_group(object_id, None)] + [cls.tag_group(object_id, t) for t in tags]


def broadcast_event_message(event: dict[str, Any]) -> dict[str, Any] | None:
    """The ASGI send message of an event carrying ``text`` or ``bytes`` (never mutating
    it: channels-redis hands the same dict to every local receiver)."""
    if "text" in event and event["text"] is not None:
        message = {"type": "websocket.send", "text": event["text"]}
    elif "bytes" in event and event["bytes"] is not None:
        message = {"type": "websocket.send", "bytes": event["bytes"]}
    else:
        return None
    if POSITION in event:  # a kept broadcast: its (epoch, offset), for resuming sockets
        message[POSITION] = event[POSITION]
    if NUMBER in event:  # sent by a handler of another process (outgoing.py)
        message[NUMBER] = event[NUMBER]
    return message


class Fanout:
    """This process's tag-group memberships and the local sockets of each group."""

    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.channel_layer = get_channel_layer()
        #: Group name -> this process's sockets in it.
        self.groups: dict[str, Members] = {}
        #: Groups with no local socket left, until they are given up.
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        #: This process's channel in the channel layer (joined to every group above).
        self.channel: str | None = None
        self._channel_ready: asyncio.Future[str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_no_group = False

    def holds(self, group: str) -> bool:
        """True when this process has sockets in ``group``."""
        return bool(self.groups.get(group))

    async def join(self, sock: LocalSocket, tags: tuple[str, ...]) -> None:
        """Add ``sock`` to its object's groups (joining new ones once per process)."""
        new = []
        for name in _group_names(sock, tags):
            members = self.groups.get(name)
            if not members:
                self.groups[name] = sock.id
                if members is None:
                    new.append(name)
            elif isinstance(members, str):
                self.groups[name] = {members, sock.id}
            else:
                members.add(sock.id)
            linger = self._lingering.pop(name, None)
            if linger is not None:
                linger.cancel()
        if new and self.channel_layer is not None:
            channel = await self._process_channel()
            local = serve(self.channel_layer, self)
            if local is None:
                # One round trip for all of them on channels_redis (redis/groups.py).
                await group_add_many(self.channel_layer, new, channel)
            else:
                for name in new:
                    if name in self.groups:
                        local.joined(name, channel)  # nothing stored per group

    def leave(self, sock: LocalSocket) -> None:
        """Forget ``sock``; a group left empty is given up after ``GROUP_LINGER``.

        Lingering keeps churn (a socket leaving and another joining) off the channel
        layer; groups served by :mod:`~django_durable.local_groups` cost the channel
        layer nothing, so they are given up at once.
        """
        for name in _group_names(sock, sock.tags):
            members = self.groups.get(name)
            if not members:
                continue
            if isinstance(members, set):
                members.discard(sock.id)
                if len(members) == 1:
                    self.groups[name] = next(iter(members))
                continue
            if members != sock.id:
                continue
            # The last local socket of the group.
            local = serve(self.channel_layer, self)
            if self.channel is None or local is not None:
                del self.groups[name]
                if local is not None and self.channel is not None:
                    local.left(name, self.channel)
            else:
                self.groups[name] = ""
                self._lingering[name] = asyncio.get_running_loop().call_later(
                    GROUP_LINGER, self._expire, name
                )

    async def deliver_local(self, group: str, event: dict[str, Any]) -> int:
        """Fan a ``durable.broadcast`` event out to this process's sockets of ``group``."""
        message = broadcast_event_message(event)
        members = self.groups.get(group)
        if message is None or not members:
            return 0
        excluded = event.get("exclude") or ()
        if isinstance(members, str):
            targets = [] if members in excluded else [members]
        else:
            excluded = set(excluded)
            targets = [sid for sid in members if sid not in excluded]
        return await self.runtime.transport.send_local(targets, message)

    async def handle(self, message: dict[str, Any]) -> None:
        """A group message that reached the process channel."""
        group = message.get("group")
        if not isinstance(group, str):
            metrics.inc("group_messages_refused")
            if not self._warned_no_group:
                self._warned_no_group = True
                logger.warning(
                    "a %s message without its group was refused (and every later one is "
                    "counted in group_messages_refused): build group messages with "
                    "django_durable.broadcast_event(group, message)",
                    message.get("type"),
                )
            return
        if message.get("type") == "durable.settings":
            # An owner changed its auto-response: the layer caches it for our gateways.
            key = message.get("key")
            if isinstance(key, str) and self.holds(group):
                self.runtime.layer.settings_announced(key, message.get("auto"))
        else:
            await self.deliver_local(group, message)

    # Channel-layer side -----------------------------------------------------------------

    async def _process_channel(self) -> str:
        """The process channel (made on first use; the transport's when it has one)."""
        if self.channel is not None:
            return self.channel
        loop = asyncio.get_running_loop()
        if self._channel_ready is None:
            self._channel_ready = loop.create_future()
            try:
                channel = await self.runtime.transport.group_channel()
                if channel is None:
                    channel = await new_deliverable_channel(self.channel_layer, "durable")
                    self._spawn(self._read(channel), "durable-groups")
            except BaseException as exc:
                self._channel_ready.set_exception(exc)
                self._channel_ready = None
                raise
            self._spawn(self._refresh(), "durable-group-refresh")
            self.channel = channel
            self._channel_ready.set_result(channel)
            return channel
        return await asyncio.shield(self._channel_ready)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _expire(self, name: str) -> None:
        self._lingering.pop(name, None)
        if self.groups.get(name):
            return
        del self.groups[name]
        self._spawn(self._discard(name), "durable-group-discard")

    async def _discard(self, name: str) -> None:
        channel = self.channel
        if channel is not None and name not in self.groups:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(name, channel)

    async def _read(self, channel: str) -> None:
        """The reader of a process channel this module made (no transport reads one)."""
        layer = self.channel_layer
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("process channel receive failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            try:
                await self.handle(message)
            except Exception:
                logger.exception("handling %s failed", message.get("type"))

    async def resubscribe(self) -> None:
        """Join every group again (after Redis lost its data, memberships included).

        Tries every group, then raises the first failure (right after Redis restarted,
        pooled connections fail once), so that the caller tries again.
        """
        failure: Exception | None = None
        channel = self.channel
        if channel is None:
            return
        local = serve(self.channel_layer, self)
        if local is not None:
            local.rejoin(self)
            return
        for name in list(self.groups):
            try:
                await self.channel_layer.group_add(name, channel)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH)
            with contextlib.suppress(Exception):
                await self.resubscribe()
