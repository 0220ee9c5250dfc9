"""Events a process could not hand to their object yet, kept apart from the connection.

A gateway numbers each frame of its socket and keeps it in the socket's outbox until
the owner acknowledges it (see :mod:`django_durable.redis.outbox`). Handing an event on needs
Redis (who owns the object? the owner's channel). When Redis is away, frozen or slow,
the gateway must not wait for it: daphne keeps reading the socket into a queue of its
own, and when the client disconnects meanwhile it cancels the connection's task after
``application_close_timeout`` (10 s), losing every frame still in that queue and the
close. So a delivery that does not go through at once (``STALL_AFTER``) is left here,
and one task per process delivers the held events, in order per socket, once Redis
answers; the gateway goes back to reading, takes the disconnect, holds the close too and
ends. The sockets (and their outboxes) stay referenced here until every event is out.

Memory is bounded: the payload bytes held (plus ``EVENT_OVERHEAD`` per event) may reach
``MAX_HELD_BYTES`` per process. A socket whose frame passes the bound is closed with
1013 (Try Again Later); what it had sent up to that frame is still held and delivered,
and what it sends after the server's Close is not for the object (the gateway's rule
for every close the server makes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.exceptions import ChannelFull

from .. import conf
from ..asgi_server import TRY_AGAIN_LATER
from ..events import Event
from ..exceptions import SessionLayerUnavailable
from .outbox import OutboxEntry, hand_on

#: A gateway's socket (``sockets.LocalSocket``).
LocalSocket = Any

logger = logging.getLogger(__name__)

#: Seconds a gateway waits for one delivery before leaving it to be held.
STALL_AFTER = 1.0
#: Bytes counted for each held event besides its payload (the event, the outbox entry).
EVENT_OVERHEAD = 256


async def close_try_again_later(sock: LocalSocket) -> None:
    """Close ``sock`` with 1013, and never raise: its gateway must go on reading."""
    try:
        await sock.close(TRY_AGAIN_LATER)
    except Exception:
        logger.warning("socket %s: closing it with %d failed", sock.id, TRY_AGAIN_LATER)


def event_size(event: Event) -> int:
    """Bytes counted for one held event."""
    data = event.data
    if isinstance(data, (str, bytes)):
        return len(data) + EVENT_OVERHEAD
    return EVENT_OVERHEAD


class HeldEvents:
    """This process's undelivered events, by socket, and the task that delivers them."""

    def __init__(self, deliver: Callable[[LocalSocket, Event], Awaitable[str]]) -> None:
        self._deliver = deliver
        #: Sockets with at least one undelivered event, in the order they stalled.
        self.sockets: dict[str, LocalSocket] = {}
        self.bytes = 0
        self._task: asyncio.Task[None] | None = None

    def stalled(self, sock: LocalSocket) -> bool:
        """Whether ``sock`` has events held."""
        return sock.id in self.sockets

    def hold(self, sock: LocalSocket, entry: OutboxEntry) -> bool:
        """Keep ``entry`` (already in the socket's outbox) for later; True past the bound."""
        self.bytes += event_size(entry.event)
        self.sockets[sock.id] = sock
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="durable-held-events"
            )
        return bool(self.bytes > conf.get("MAX_HELD_BYTES"))

    async def _run(self) -> None:
        delay = 0.05
        warned = False
        while self.sockets:
            try:
                for sid, sock in list(self.sockets.items()):
                    while pending := [e for e in sock.outbox or () if not e.owner]:
                        for entry in pending:
                            await hand_on(sock, [entry], self._deliver)
                            self.bytes -= event_size(entry.event)
                    # Nothing awaited since the last look: its gateway delivers again.
                    del self.sockets[sid]
                delay = 0.05
            except (SessionLayerUnavailable, ChannelFull) as exc:
                if not warned:
                    logger.warning(
                        "holding %d events of %d sockets until Redis answers: %s",
                        self.count(),
                        len(self.sockets),
                        exc or type(exc).__name__,
                    )
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception:
                logger.exception("delivering held events failed; retrying")
                await asyncio.sleep(1.0)
        if warned:
            logger.warning("held events delivered")

    def count(self) -> int:
        """Events held, all sockets."""
        return sum(
            1 for sock in self.sockets.values() for entry in (sock.outbox or ()) if not entry.owner
        )
