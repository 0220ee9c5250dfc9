"""Tag groups: one channel-layer membership per process, fanned out locally.

Each tag of each object is a channel-layer group (``DurableConsumer.tag_group``), and so
is "every socket of the object". A process joins a group once, with one channel of its
own, while it holds at least one socket in it, and a reader task per group fans each
``durable.broadcast`` message out to the local sockets. So a tag broadcast costs one
channel-layer message per process rather than one per socket, and code outside the
object can ``group_send`` to the same groups as to any Channels group.

Groups are re-joined every ``GROUP_REFRESH`` seconds because channels-redis forgets a
membership ``group_expiry`` (24 h) after it was added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer

from .framing import POSITION
from .shards import new_deliverable_channel

if TYPE_CHECKING:
    from .gateway import LocalSocket
    from .runtime import Runtime

logger = logging.getLogger(__name__)

GROUP_REFRESH = 3600.0
#: Seconds a group with no local socket left is kept before this process leaves it.
GROUP_LINGER = 30.0


def _group_names(sock: LocalSocket, tags: tuple[str, ...]) -> list[str]:
    cls, object_id = sock.cls, sock.object_id
    return [cls.tag_group(object_id, None)] + [cls.tag_group(object_id, t) for t in tags]


class Membership:
    __slots__ = ("channel", "key", "linger", "name", "reader", "sockets")

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.key = key
        self.linger: asyncio.TimerHandle | None = None
        self.sockets: set[str] = set()
        self.channel: str | None = None
        self.reader: asyncio.Task[None] | None = None


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
    return message


class Fanout:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.channel_layer = get_channel_layer()
        self.groups: dict[str, Membership] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    async def join(self, sock: LocalSocket, tags: tuple[str, ...]) -> None:
        for name in _group_names(sock, tags):
            membership = self.groups.get(name)
            if membership is None:
                membership = self.groups[name] = Membership(name, sock.key)
                if self.channel_layer is not None:
                    await self._subscribe(membership)
            elif membership.linger is not None:
                membership.linger.cancel()
                membership.linger = None
            membership.sockets.add(sock.id)

    def leave(self, sock: LocalSocket) -> None:
        """Forget ``sock``; a group left empty is given up after ``GROUP_LINGER``.

        Lingering keeps churn (a socket leaving and another joining) off the channel
        layer, and a group reader is stopped by a message, never cancelled: cancelling
        a channels-redis ``receive()`` can lose a message meant for another channel of
        the process.
        """
        for name in _group_names(sock, sock.tags):
            membership = self.groups.get(name)
            if membership is None or sock.id not in membership.sockets:
                continue
            membership.sockets.discard(sock.id)
            if not membership.sockets and membership.linger is None:
                membership.linger = asyncio.get_running_loop().call_later(
                    GROUP_LINGER, self._expire, membership
                )

    async def deliver_local(self, group: str, event: dict[str, Any]) -> int:
        """Fan a ``durable.broadcast`` event out to this process's sockets of ``group``."""
        message = broadcast_event_message(event)
        membership = self.groups.get(group)
        if message is None or membership is None:
            return 0
        excluded = set(event.get("exclude") or ())
        targets = [sid for sid in membership.sockets if sid not in excluded]
        return await self.runtime.transport.send_local(targets, message)

    # Channel-layer side -----------------------------------------------------------------

    async def _subscribe(self, membership: Membership) -> None:
        layer = self.channel_layer
        membership.channel = await new_deliverable_channel(layer, "durable")
        await layer.group_add(membership.name, membership.channel)
        membership.reader = asyncio.get_running_loop().create_task(
            self._read(membership), name=f"durable-group:{membership.name}"
        )
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    def _expire(self, membership: Membership) -> None:
        membership.linger = None
        if membership.sockets or self.groups.get(membership.name) is not membership:
            return
        del self.groups[membership.name]
        if membership.channel is not None:
            task = asyncio.get_running_loop().create_task(self._retire(membership))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, membership: Membership) -> None:
        """Leave the group, then tell the reader to stop (it ends at that message)."""
        with contextlib.suppress(Exception):
            await self.channel_layer.group_discard(membership.name, membership.channel)
        try:
            await self.channel_layer.send(membership.channel, {"type": "durable.stop"})
        except Exception:
            if membership.reader is not None:  # the layer is gone: nothing left to lose
                membership.reader.cancel()

    async def _read(self, membership: Membership) -> None:
        layer = self.channel_layer
        origin = self.runtime.process_id
        while True:
            try:
                event = await layer.receive(membership.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("group %s: receive failed; retrying", membership.name, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            kind = event.get("type")
            if kind == "durable.stop":
                return
            if kind == "durable.settings":
                self._settings_changed(membership.key, event)
            elif kind == "durable.broadcast" and event.get("origin") != origin:
                await self.deliver_local(membership.name, event)

    def _settings_changed(self, key: str, event: dict[str, Any]) -> None:
        cache = getattr(self.runtime.layer, "auto_cache", None)
        if cache is not None:
            from .session.redis import unpack_pair

            cache[key] = unpack_pair(event.get("auto"))

    async def resubscribe(self) -> None:
        """Join every group again (after Redis lost its data, memberships included).

        Tries every group, then raises the first failure (right after Redis restarted,
        pooled connections fail once), so that the caller tries again.
        """
        failure: Exception | None = None
        for membership in list(self.groups.values()):
            if membership.channel is not None:
                try:
                    await self.channel_layer.group_add(membership.name, membership.channel)
                except Exception as exc:
                    failure = failure or exc
        if failure is not None:
            raise failure

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH)
            for membership in list(self.groups.values()):
                if membership.channel is not None:
                    with contextlib.suppress(Exception):
                        await self.channel_layer.group_add(membership.name, membership.channel)
