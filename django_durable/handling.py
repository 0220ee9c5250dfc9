"""Delivering one event to an object's instance: timeouts, failures, final events.

A mixin of :class:`~django_durable.live.LiveObject`, apart because it is the part that
runs user code (and what a handler's failure or timeout does to the object), while
the live object's own module is about its mailbox and its writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from . import conf, metrics
from .events import CALL, CLOSE, CONNECT, ERROR, HIBERNATE, MESSAGE, Event
from .exceptions import HandlerTimeout, OwnershipLost
from .session.base import CLOSED, OPEN, RemoveSocket, SocketRecord
from .websocket import DurableWebSocket

if TYPE_CHECKING:
    from .classes import DurableClass
    from .gates import InputGate
    from .mailbox import Mailbox
    from .objects import DurableObject
    from .outgoing import Run, Runs
    from .overload import Backlog
    from .ports import Host, LiveObjectPort
    from .session.base import ObjectSession, SessionWrite

logger = logging.getLogger(__name__)


class EventHandling:
    """Runs handlers for a live object (its worker, or one task per busy socket)."""

    # Set by LiveObject.__init__.
    runtime: Host
    key: str
    instance: DurableObject | None
    session: ObjectSession
    gate: InputGate
    queue: Mailbox
    backlog: Backlog
    runs: Runs
    holding: Run | None
    cls: DurableClass
    inflight: set[asyncio.Task[None]]
    _busy_sockets: dict[str, deque[Event]]
    _connecting: dict[str, Any]
    _writes: list[SessionWrite]

    def _port(self) -> LiveObjectPort:
        return cast("LiveObjectPort", self)  # always a LiveObject

    if TYPE_CHECKING:  # LiveObject's, used here

        async def _start(self) -> None: ...

        async def flush(self, last: bool = False) -> None: ...

        async def flush_held(self, last: bool = False) -> None: ...

        def _timeout(self) -> float | None: ...

        def _discard_instance(self, why: str) -> None: ...

        def write_socket(self, record: SocketRecord) -> None: ...

        def handled(self, event: Event, record: SocketRecord | None) -> None: ...

    # Reentrant delivery: one chain of events per socket, sockets interleave ----------

    def _spawn(self, event: Event) -> None:
        sid = event.socket_id
        if sid is not None:
            pending = self._busy_sockets.get(sid)
            if pending is not None:
                pending.append(event)
                return
            self._busy_sockets[sid] = deque()
        task = asyncio.get_running_loop().create_task(self._chain(event))
        self.inflight.add(task)
        task.add_done_callback(self._chain_done)

    async def _chain(self, event: Event) -> None:
        sid = event.socket_id
        while True:
            if self.instance is None:
                await self._start()
            await self._deliver(event)
            if sid is None:
                return
            pending = self._busy_sockets[sid]
            if not pending:
                del self._busy_sockets[sid]
                return
            event = pending.popleft()
            await self.gate.wait_open()

    def _chain_done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        if conf.get("HIBERNATE_EAGERLY") and not self.inflight and self.queue.empty():
            self.queue.put_nowait(Event(HIBERNATE))

    # Delivering one event -----------------------------------------------------------

    async def _deliver(self, event: Event) -> None:
        instance = self.instance
        assert instance is not None
        timeout = asyncio.timeout(self._timeout())
        started = time.perf_counter()
        # Numbered until its writes are stored (the flush below): until then it may run again.
        run = self.runs.begin(self.runtime.layer.fence_token(self.key), event)
        if run is not None and not self.cls.reentrant:
            # Its frames for other processes may go with its writes, in one round trip.
            self.holding = run[0]
        record = self.session.sockets.get(event.socket_id or "")
        try:
            async with timeout:
                await self._handle(instance, event)
        except TimeoutError as exc:
            if timeout.expired():
                await self._timed_out(event)
            else:
                self._failed(event, exc)
        except Exception as exc:
            self._failed(event, exc)
        finally:
            metrics.inc("events_handled")
            metrics.observe("handler_seconds", time.perf_counter() - started)
            self.handled(event, record)
            try:
                await self.flush_held(last=True)
            except OwnershipLost:
                pass  # logged by lose(); the new owner runs the events
            except Exception:
                logger.exception("object %s: writing to the session layer failed", self.key)
            finally:
                self.runs.end(run)
                if self.holding is not None:
                    self.holding = None
                    await self.runtime.transport.push_held(self.key)

    async def _handle(self, instance: DurableObject, event: Event) -> None:
        kind = event.kind
        if kind == MESSAGE:
            record = self.session.sockets.get(event.socket_id or "")
            if record is not None:
                await instance.websocket_message(DurableWebSocket(record, self._port()), event.data)
        elif kind in (CLOSE, ERROR):
            await self._final(instance, event)
        elif kind == CONNECT:
            await self._connect(instance, event)
        elif kind == CALL:
            event.resolve(await event.data(instance))

    async def _connect(self, instance: DurableObject, event: Event) -> None:
        sock, scope = event.data  # a ConnectData
        scope = await self.runtime.transport.scope_for(sock, scope)
        existing = self.session.sockets.get(sock.id)
        if existing is not None:
            # A connect sent again after a failover: it was accepted already.
            await self.runtime.transport.verdict(self.key, sock, existing)
            event.resolve(existing.tags)
            return
        holder = getattr(sock, "holder", None) or self.runtime.process_id
        record = SocketRecord(sock.id, holder=holder)
        ws = DurableWebSocket(record, self._port(), scope)
        self._connecting[sock.id] = sock
        try:
            await instance.connect(ws)
        finally:
            ws._scope = None
            accepted = record.id in self.session.sockets
            if self._connecting.pop(sock.id, None) is not None:  # no early verdict sent
                if accepted:
                    await self.flush(last=True)
                await self.runtime.transport.verdict(self.key, sock, record if accepted else None)
            event.resolve(record.tags if accepted else None)

    async def _final(self, instance: DurableObject, event: Event) -> None:
        """The one close or error event of a socket; the socket is forgotten after it."""
        sid = event.socket_id or ""
        record = self.session.sockets.get(sid)
        if record is None:
            return
        record.state = CLOSED
        try:
            ws = DurableWebSocket(record, self._port())
            if event.kind == CLOSE:
                code, reason, was_clean = event.data
                await instance.websocket_close(ws, code, reason, was_clean)
            else:
                await instance.websocket_error(ws, event.data)
        finally:
            self.session.sockets.pop(sid, None)
            self.backlog.forget(sid)
            self._writes.append(RemoveSocket(sid))

    def _failed(self, event: Event, exc: BaseException) -> None:
        if event.kind == CALL:
            event.fail(exc)
            return
        logger.error("object %s: handler for %s raised", self.key, event.kind, exc_info=exc)
        if event.kind == CONNECT:
            event.resolve(None)

    async def _timed_out(self, event: Event) -> None:
        timeout_ms = self.session.event_timeout_ms
        error = HandlerTimeout(
            f"handler for {event.kind} ran past the event timeout of {timeout_ms} ms"
        )
        logger.error("object %s: %s; discarding the instance", self.key, error)
        self._discard_instance("event timeout")
        if event.kind == CALL:
            event.fail(error)
            return
        if event.kind == CONNECT:
            sock = event.data.sock
            await self.runtime.transport.verdict(self.key, sock, None)
            event.resolve(None)
            return
        sid = event.socket_id or ""
        record = self.session.sockets.get(sid)
        if record is None or event.kind in (CLOSE, ERROR):
            self.session.sockets.pop(sid, None)
            self._writes.append(RemoveSocket(sid))
            return
        if record.state == OPEN:
            record.state = CLOSED
            self.write_socket(record)
        await self.runtime.transport.kill(self.key, record, error)
        self.queue.put_nowait(Event(ERROR, sid, error))
