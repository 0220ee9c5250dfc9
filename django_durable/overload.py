"""An object's bound on waiting events: who is closed (1013) and what is refused.

Each live object has a :class:`Backlog` watching its mailbox. Past ``MAX_QUEUED_EVENTS``
or ``MAX_QUEUED_BYTES`` the socket with the most waiting is closed with 1013 (Try Again
Later): its queued events stay and are handled, then its final event, so nothing queued
is dropped; its gateway routes nothing more. Stub calls (and alarms) to an object past
its bound raise :class:`~django_durable.exceptions.Overloaded` and run nothing.

Each socket's own bound (``MAX_SOCKET_QUEUED_*``) is kept by its gateway, which counts
what it routed until the object acknowledges it: see :mod:`django_durable.gateway`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

from . import conf, metrics
from .asgi_server import CLOSE_REASONS, TRY_AGAIN_LATER, close_with_code
from .exceptions import Overloaded
from .session.base import CLOSING, OPEN, SocketRecord

if TYPE_CHECKING:
    from .ports import LiveObjectPort

logger = logging.getLogger(__name__)


class Backlog:
    """A live object's bound on waiting events, and what it refuses past it."""

    __slots__ = ("_closing", "_live_ref", "_shedding")

    def __init__(self, live: LiveObjectPort) -> None:
        # Weak: the live object holds its backlog, and a reference back would make a
        # cycle that only the cyclic garbage collector frees, after every hibernation;
        # its collections walk every object of the process (see LiveObject._unlink).
        self._live_ref = weakref.ref(live)
        #: Sockets closed with 1013 for this backlog (until their final event).
        self._shedding: set[str] = set()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def _live(self) -> LiveObjectPort:
        # Called through the live object (dispatcher, worker): it is there.
        live = self._live_ref()
        assert live is not None, "the backlog of a freed live object"
        return live

    def over(self, count: int | None = None, nbytes: int | None = None) -> bool:
        """Whether the mailbox is past its bound."""
        queue = self._live.queue
        count = queue.count if count is None else count
        nbytes = queue.nbytes if nbytes is None else nbytes
        settings = conf.durable_settings()
        return bool(count > settings["MAX_QUEUED_EVENTS"] or nbytes > settings["MAX_QUEUED_BYTES"])

    def describe(self) -> str:
        """The backlog in words, for a log line."""
        queue = self._live.queue
        return (
            f"{queue.count} events ({queue.nbytes} bytes) waiting; "
            f"MAX_QUEUED_EVENTS is {conf.get('MAX_QUEUED_EVENTS')}, "
            f"MAX_QUEUED_BYTES {conf.get('MAX_QUEUED_BYTES')}"
        )

    def refuse_call(self) -> None:
        """Raise ``Overloaded`` (logged once, counted) when past the bound."""
        if self.over():
            key = self._live.key
            logger.warning("object %s overloaded (%s): call refused", key, self.describe())
            metrics.inc("overload_refusals")
            raise Overloaded(f"{key} is overloaded ({self.describe()}); nothing ran, try again")

    def forget(self, sid: str) -> None:
        """The socket's final event was handled."""
        self._shedding.discard(sid)

    def check(self) -> None:
        """After a message was queued: past the bound, close the socket most responsible.

        What sockets already being closed have waiting does not count again: their
        backlog drains by itself, and must not get other sockets closed meanwhile.
        """
        if not self.over():
            return
        live = self._live
        queue = live.queue
        shed = [(queue.waiting(s), queue.socket_bytes.get(s, 0)) for s in self._shedding]
        if not self.over(
            queue.count - sum(n for n, _ in shed), queue.nbytes - sum(b for _, b in shed)
        ):
            return
        sid = queue.heaviest_socket(exclude=self._shedding)
        if sid is None:
            return
        self._shedding.add(sid)
        sock = live.runtime.sockets.get(sid)
        if sock is not None:
            if not sock.open:
                return  # closing already (by its client, or past its own bound)
            sock.open = False  # its gateway routes nothing more from now on
        logger.warning(
            "object %s overloaded (%s): socket %s closed with 1013", live.key, self.describe(), sid
        )
        metrics.inc("overload_closes")
        record = live.session.sockets.get(sid)
        if record is not None and record.state == OPEN:
            record.state = CLOSING
            live.write_socket(record)
        task = asyncio.get_running_loop().create_task(self._close(live, sid, record))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, live: LiveObjectPort, sid: str, record: SocketRecord | None) -> None:
        sock = live.runtime.sockets.get(sid)
        try:
            if sock is not None:
                await close_with_code(
                    sock.asgi_send, TRY_AGAIN_LATER, CLOSE_REASONS[TRY_AGAIN_LATER]
                )
            elif record is not None:
                await live.runtime.transport.close(live.key, record, TRY_AGAIN_LATER, "")
        except Exception:
            logger.warning("object %s: closing socket %s failed", live.key, sid, exc_info=True)
