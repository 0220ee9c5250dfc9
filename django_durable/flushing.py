"""A live object's writes to the session layer: queued by its handlers, stored after each.

A mixin of :class:`~django_durable.live.LiveObject`, apart because it is the part that
decides when what a handler changed is stored (and acknowledged), and what happens
while the session layer cannot take it, while the live object's own module is about
its mailbox and its worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from . import conf
from .exceptions import OwnershipLost, SessionLayerUnavailable
from .session.base import AddSocket, SaveSettings, SocketRecord, UpdateSocket

if TYPE_CHECKING:
    from .classes import DurableClass
    from .mailbox import Mailbox
    from .ports import Ack, Host, LiveObjectPort
    from .session.base import ObjectSession, SessionWrite

logger = logging.getLogger(__name__)

#: The most sockets an object may have for its last write before an eager hibernation
#: to release its lease too (see ``SessionWrites._ends_after_this``).
RELEASE_WITH_WRITE_MAX_SOCKETS = 8


class SessionWrites:
    """What a live object's handlers changed, and when it is stored."""

    # Set by LiveObject.__init__.
    runtime: Host
    cls: DurableClass
    key: str
    session: ObjectSession
    queue: Mailbox
    front: deque[Any]
    inflight: set[asyncio.Task[None]]
    lost: bool
    ending: bool
    renewed: asyncio.Event
    _writes: list[SessionWrite]
    _acks: list[Ack]
    _connecting: dict[str, Any]
    _held: dict[str, dict[int, Any]]
    _ready_left: int
    _release_pending: bool

    def _port(self) -> LiveObjectPort:
        return cast("LiveObjectPort", self)  # always a LiveObject

    if TYPE_CHECKING:  # LiveObject's, used here

        def lose(self) -> None: ...

    def add_socket(self, record: SocketRecord, subprotocol: str | None = None) -> None:
        """``accept_websocket()``: the record, written after the handler."""
        self.session.sockets[record.id] = record
        self._writes.append(AddSocket(record))
        sock = self._connecting.get(record.id)
        if sock is not None:
            sock.subprotocol = subprotocol

    def write_socket(self, record: SocketRecord) -> None:
        """Write the record after the handler (if the socket is still known)."""
        if record.id in self.session.sockets:
            self._writes.append(UpdateSocket(record))

    def write_settings(self) -> None:
        """Write the object's settings after the handler."""
        self._writes.append(SaveSettings())

    def _ends_after_this(self) -> bool:
        """Whether the worker hibernates once the event being handled is stored:
        ``HIBERNATE_EAGERLY`` and nothing else to run (the check ``_run`` makes after it).

        Only for an object with few sockets: deciding before the write leaves out the
        events that arrive during it, which then wake the object again, and a wake
        reads every socket record. For a larger object the worker decides after the
        write, as it always did, and events that came meanwhile keep it awake.
        """
        return bool(
            conf.get("HIBERNATE_EAGERLY")
            and len(self.session.sockets) <= RELEASE_WITH_WRITE_MAX_SOCKETS
            and not self.cls.reentrant
            and not self.lost
            and not self._ready_left
            and self.queue.empty()
            and not self.front
            and not self._held
            and not self.inflight
        )

    async def flush(self, last: bool = False) -> None:
        """Store the queued writes, then acknowledge the events they cover.

        ``last``: the event's final write. When the worker stops right after it, the
        transport takes the object out of the dispatcher now (later events wake it
        again), and the write may give the object up in the same round trip.
        """
        if last and not self.ending and self._ends_after_this():
            # (A transport that saves nothing so, the single-process one, keeps the
            # worker as it was: it decides after the write.)
            self.ending = self._release_pending = self.runtime.transport.stopping(self._port())
        while self._writes or self._release_pending:
            writes, self._writes = self._writes, []
            release = self._release_pending
            try:
                await self.runtime.transport.store(self.key, writes, self.session, release)
                self._release_pending = False
            except OwnershipLost:
                # Another process owns the object now: nothing this instance did may be
                # stored or acknowledged. Stop it; the gateways' outboxes send the events
                # to the new owner.
                self._acks.clear()
                self.lose()
                raise
            except BaseException:
                self._writes[:0] = writes  # keep them for the next flush
                raise
            if any(isinstance(write, SaveSettings) for write in writes):
                await self.runtime.transport.settings_changed(self._port())
        if self._acks:
            acks, self._acks = self._acks, []
            await self.runtime.transport.ack(acks)

    async def flush_held(self, last: bool = False) -> None:
        """Flush, holding the object while the session layer cannot take the writes.

        A handler that ran has had its effects (replies, storage writes): its events
        must be recorded as handled before anything else runs, or the gateways' outboxes
        would send them again and the handler would run twice. So while Redis is away
        the object runs nothing and keeps its writes, and retries them until they go
        through (Redis keeps the lease through an outage: see the Redis layer's live
        clock), or until another process took the object (``OwnershipLost``).
        """
        delay = 0.05
        warned = False
        while True:
            try:
                await self.flush(last)
                if warned:
                    logger.warning("object %s: the session layer is back; writes stored", self.key)
                return
            except SessionLayerUnavailable as exc:
                if self.lost:
                    raise
                if not warned:
                    logger.warning(
                        "object %s: writing to the session layer failed (%s); holding its "
                        "events until it is back",
                        self.key,
                        exc,
                    )
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def wait_renewed(self) -> None:
        """Hold the next handler while the lease cannot be renewed."""
        if not self.renewed.is_set():
            logger.warning("object %s: lease not renewed (Redis away); holding events", self.key)
            await self.renewed.wait()
