"""A socket held by a gateway of this process, as the rest of the process reaches it.

The gateway (one ASGI application per connection) reads the socket; this record is
what the fan-out, the transports and the backlog write to and count against, so it
lives below all of them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from typing import Any

from . import conf, framing, metrics
from .asgi_server import CLOSE_REASONS, close_with_code
from .classes import DurableClass
from .resume import Resume, release_held

logger = logging.getLogger(__name__)


def new_socket_id() -> str:
    """A socket id: random, URL-safe, 16 characters."""
    return secrets.token_urlsafe(12)


class LocalSocket:
    """A socket held by a gateway of this process."""

    __slots__ = (
        "accepted",
        "asgi_send",
        "backlog",
        "backlog_bytes",
        "cls",
        "id",
        "key",
        "kill_error",
        "object_id",
        "open",
        "outbox",
        "resume",
        "seq",
        "subprotocol",
        "tags",
        "task",
    )

    def __init__(
        self,
        socket_id: str,
        cls: DurableClass,
        object_id: str,
        key: str,
        asgi_send: Any,
        task: asyncio.Task[Any] | None,
    ) -> None:
        self.id = socket_id
        self.cls = cls
        self.object_id = object_id
        self.key = key
        self.asgi_send = asgi_send
        self.task = task
        self.accepted = False
        self.open = True
        self.kill_error: BaseException | None = None
        self.tags: tuple[str, ...] = ()
        #: The number of the last event this gateway sent its object.
        self.seq = 0
        #: Events forwarded to another process and not yet acknowledged (or None).
        self.outbox: Any = None
        #: The subprotocol ``connect()`` chose, sent with the accept.
        self.subprotocol: str | None = None
        #: For a client that opted in to resuming: its request and held frames.
        self.resume: Resume | None = None
        #: ``(seq, bytes)`` of the messages routed and not yet handled (or None): what
        #: this socket has waiting for its object, bounded by MAX_SOCKET_QUEUED_*.
        self.backlog: deque[tuple[int, int]] | None = None
        self.backlog_bytes = 0

    def queued(self, seq: int, size: int) -> None:
        """Count an event routed and not yet handled against the socket's bound."""
        if self.backlog is None:
            self.backlog = deque()
        self.backlog.append((seq, size))
        self.backlog_bytes += size

    def acked(self, seq: int) -> None:
        """The object handled (and stored) this socket's events up to ``seq``."""
        backlog = self.backlog
        while backlog and backlog[0][0] <= seq:
            self.backlog_bytes -= backlog.popleft()[1]
        if not backlog:
            self.backlog = None
            self.backlog_bytes = 0

    def over_backlog(self, size: int) -> bool:
        """Whether one more message of ``size`` bytes would pass this socket's bound."""
        if not self.backlog:
            return False  # one message always goes, whatever its size
        settings = conf.durable_settings()
        return bool(
            len(self.backlog) >= settings["MAX_SOCKET_QUEUED_EVENTS"]
            or self.backlog_bytes + size > settings["MAX_SOCKET_QUEUED_BYTES"]
        )

    async def accept(self) -> None:
        """Send the accept (with the chosen subprotocol), once."""
        if not self.accepted:
            self.accepted = True
            message: dict[str, Any] = {"type": "websocket.accept"}
            if self.subprotocol is not None:
                message["subprotocol"] = self.subprotocol
            await self.asgi_send(message)

    async def send(self, message: dict[str, Any]) -> None:
        """Send a frame (framed, for a resuming client)."""
        if self.resume is not None:
            await self.send_framed(framing.frame(message), framing.offset_of(message))
            return
        if not self.accepted:
            await self.accept()
        await self.asgi_send(message)

    async def send_framed(self, message: dict[str, Any], offset: int | None) -> None:
        """Send a frame for a resuming client (held until its replay is done)."""
        if not self.accepted:
            await self.accept()
        resume = self.resume
        if resume is not None:
            if resume.held is not None:
                resume.held.append((offset, message))
                return
            if resume.duplicate(offset):
                return
        await self.asgi_send(message)

    async def close(self, code: int) -> None:
        """Close the connection with ``code`` (once)."""
        if not self.open:
            return
        await self.accept()
        if self.resume is not None:
            await release_held(self)
        self.open = False
        if code in CLOSE_REASONS:
            # Codes an application may not send through every server's ASGI path.
            await close_with_code(self.asgi_send, code, CLOSE_REASONS[code])
        else:
            await self.asgi_send({"type": "websocket.close", "code": code})

    async def refuse(self, code: int, counter: str, why: str) -> None:
        """Close this socket with ``code`` for a refusal: logged once and counted."""
        if not self.open:
            return
        logger.warning("object %s: socket %s closed with %d: %s", self.key, self.id, code, why)
        metrics.inc(counter)
        await self.close(code)

    def kill(self, error: BaseException) -> None:
        """End the connection with 1011: daphne sends it when the application raises."""
        self.open = False
        self.kill_error = error
        if self.task is not None and not self.task.done():
            self.task.cancel()
