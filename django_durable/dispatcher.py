"""The dispatcher: at most one live instance per object in this process.

It only keeps the registry of live objects (:mod:`django_durable.live`).

Each live object has a mailbox (an ``asyncio.Queue``) and one worker task that takes
events from it. The worker creates the instance on demand (``on_start()`` first),
delivers events one at a time (or, for ``reentrant`` classes, one at a time *per
socket*), enforces the event timeout, writes state changes to the session layer
after each handler, and ends when the object has been idle for ``IDLE_TIMEOUT``:
that is hibernation. The object's sockets stay with their gateways; the next event
starts a new worker, which loads the session again.

Gateways never wait on a handler (except for the connect verdict): they put events in
the mailbox and go back to reading their socket, which is what lets them answer
auto-responses while the object is busy or hibernated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .events import CALL, CONNECT, HIBERNATE, MESSAGE, ConnectData, Event
from .live import LiveObject

if TYPE_CHECKING:
    from .classes import DurableClass
    from .objects import DurableObject
    from .ports import Host
    from .sockets import LocalSocket


class Dispatcher:
    """This process's registry of live objects."""

    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.live: dict[str, LiveObject] = {}

    def wake(self, cls: DurableClass, object_id: str, key: str) -> LiveObject:
        """The live object of ``key``, created (its worker started) if it is not live."""
        live = self.live.get(key)
        if live is None:
            live = self.live[key] = LiveObject(self.runtime, cls, object_id, key)
        return live

    def put(self, cls: DurableClass, object_id: str, key: str, event: Event) -> None:
        """Queue ``event`` for the object, waking it."""
        live = self.wake(cls, object_id, key)
        live.queue.put_nowait(event)
        if event.holder:
            live.senders.add(event.holder)
        if event.kind == MESSAGE:
            live.backlog.check()

    def forget(self, live: LiveObject) -> None:
        """A live object's worker ended."""
        if self.live.get(live.key) is live:
            del self.live[live.key]

    async def connect(self, sock: LocalSocket, scope: dict[str, Any]) -> tuple[str, ...] | None:
        """Run ``connect(ws)``; the accepted socket's tags, or None when it was rejected."""
        future: asyncio.Future[tuple[str, ...] | None] = asyncio.get_running_loop().create_future()
        self.put(
            sock.cls,
            sock.object_id,
            sock.key,
            Event(CONNECT, sock.id, ConnectData(sock, scope), future),
        )
        return await future

    async def call(
        self,
        cls: DurableClass,
        object_id: str,
        key: str,
        fn: Callable[[DurableObject], Awaitable[Any]],
    ) -> Any:
        """Run ``fn(instance)`` as an event of the object (waking it) and return its result."""
        live = self.live.get(key)
        if live is not None:
            live.backlog.refuse_call()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.wake(cls, object_id, key).queue.put_nowait(Event(CALL, None, fn, future))
        return await future

    async def hibernate(self, key: str) -> None:
        """Drop the object's instance now if it is idle (see ``testing.hibernate``)."""
        live = self.live.get(key)
        if live is None:
            return
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        live.queue.put_nowait(Event(HIBERNATE, None, None, future))
        if await future is False:
            return  # dropped, and the worker goes on with the events queued meanwhile
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(live.task), timeout=5)
